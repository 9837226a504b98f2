// Keeps the answer list scrolled to its newest line while an answer streams, unless the person has scrolled
// up to read: then nothing moves until they scroll back to the bottom or send a new message.

/** Sub-pixel layout and rounding put "at the bottom" a little off; a wheel notch moves far more. */
const SLACK_PX = 24;
/** Wheel deltas in lines (deltaMode 1) as pixels: about one line of the page's text. */
const LINE_PX = 22;

/**
 * Which element scrolls depends on the layout (the list itself when wide, the page when narrow), so positions
 * are read off the messages' boxes, whichever scrolls.
 * @param {HTMLElement} list
 */
export function scrollFollower(list) {
  let following = true;
  let lastTop = 0;
  /** How far the newest line lies below what the list and the window show (0 or less: in view). */
  const hiddenBelow = () => {
    const last = list.lastElementChild;
    if (!last) return 0;
    return last.getBoundingClientRect().bottom - Math.min(list.getBoundingClientRect().bottom, window.innerHeight);
  };
  // Our own scrolling only ever goes down, to the newest line; so a scroll up that leaves it out of view is the
  // person's, and any scroll that brings it back into view resumes following.
  const onScroll = () => {
    const top = list.firstElementChild?.getBoundingClientRect().top ?? 0;
    const movedUp = top > lastTop + 0.5;
    lastTop = top;
    if (hiddenBelow() <= SLACK_PX) following = true;
    else if (movedUp) following = false;
  };
  document.addEventListener('scroll', onScroll, { capture: true, passive: true });
  // A wheel is seen before the scroll it causes: act on it at once, or text arriving within that frame would
  // pull the list back under the person's hand (up), or outrun a scroll that was meant to reach the end (down).
  const onWheel = (/** @type {WheelEvent} */ event) => {
    const pixels = event.deltaY * (event.deltaMode === 1 ? LINE_PX : event.deltaMode === 2 ? window.innerHeight : 1);
    if (pixels < 0 && (list.scrollTop > 0 || window.scrollY > 0)) following = false;
    else if (pixels > 0 && pixels >= hiddenBelow() - SLACK_PX) following = true;
  };
  list.addEventListener('wheel', onWheel, { passive: true });
  list.addEventListener(
    'touchmove',
    () => {
      if (list.scrollTop > 0 || window.scrollY > 0) following = false;
    },
    { passive: true },
  );
  // When the page scrolls (narrow layout) the composer with its Stop button sits below the list: follow to the
  // page's end, so the newest line and Stop stay in view together (a no-op when only the list scrolls).
  const toEnd = () => {
    list.lastElementChild?.scrollIntoView({ block: 'end' });
    window.scrollTo(0, document.documentElement.scrollHeight);
  };
  return {
    /** After the list grew: keeps its newest line in view, unless the person scrolled away. */
    update() {
      if (following) toEnd();
    },
    /** A new message: follow again, from here. */
    resume() {
      following = true;
      toEnd();
    },
  };
}
