// The playground follows a streaming answer in a small window: its newest text stays in view as it arrives,
// until the person scrolls up; then nothing moves until they scroll back down or send again. Headless
// Chromium against the real stack, in both layouts (wide: the answer list scrolls; narrow: the page does).
/// <reference lib="dom" />

import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../scripts/stack';
import { CHROMIUM, CHROMIUM_FLAGS, HAVE_CHROMIUM, requireChromium } from './headless-chromium';
import { startTestStack } from './test-stack';

requireChromium('the playground scrolling test');

let stack: Stack;
let browser: Browser;
const logLines: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return;
  stack = await startTestStack('playground-scroll', logLines);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
}, 60_000);

/** The streaming answer as the test measures it, independently of the page's own bookkeeping. */
interface View {
  length: number;
  /** The answer's last character lies inside the list's box and the window. */
  endInView: boolean;
  /** Top of the answer in the window: constant while nothing scrolls. */
  answerTop: number;
}

/** In the page: the view of answer number `index` (default: the last), or null before it exists. */
function measure(index: number | null): View | null {
  const answers = document.querySelectorAll('#messages li.assistant');
  const answer = answers[index ?? answers.length - 1];
  const text = answer?.querySelector('.content')?.firstChild;
  if (!answer || !(text instanceof Text)) return null;
  const range = document.createRange();
  range.setStart(text, Math.max(0, text.length - 1));
  range.setEnd(text, text.length);
  const end = range.getBoundingClientRect();
  const list = document.querySelector('#messages')!.getBoundingClientRect();
  const endInView = text.length > 0 && end.top >= Math.max(list.top, 0) - 1 && end.bottom <= Math.min(list.bottom, window.innerHeight) + 1;
  return { length: text.length, endInView, answerTop: answer.getBoundingClientRect().top };
}

type Measured = Window & { __measure: typeof measure };
const view = async (page: Page) => (await page.evaluate(() => (window as unknown as Measured).__measure(null)))!;

/** Sends `prompt` and samples the new answer once per animation frame whenever its text changed, until it ends. */
async function sendAndSample(page: Page, prompt: string): Promise<View[]> {
  const index = await page.locator('#messages li.assistant').count();
  const sampled = page.evaluate(
    (index) =>
      new Promise<View[]>((resolve) => {
        const samples: View[] = [];
        const tick = () => {
          const now = (window as unknown as Measured).__measure(index);
          if (now && now.length > 0 && samples.at(-1)?.length !== now.length) samples.push(now);
          const state = document.querySelectorAll<HTMLElement>('#messages li.assistant')[index]?.dataset.state;
          if (state && state !== 'streaming') resolve(samples);
          else requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }),
    index,
  );
  await page.fill('#prompt', prompt);
  await page.press('#prompt', 'Enter');
  return sampled;
}

/** Waits until the last answer holds `more` characters beyond `length`. */
async function grownBy(page: Page, length: number, more: number): Promise<void> {
  await page.waitForFunction((min) => (document.querySelector('#messages li.assistant:last-of-type .content')?.textContent?.length ?? 0) >= min, length + more);
}

/** Waits until the last answer has held its place on screen for ten frames (a smooth scroll has ended). */
async function stillAnswer(page: Page): Promise<void> {
  await page.evaluate(
    () =>
      new Promise<void>((resolve) => {
        let last = Number.NaN;
        let still = 0;
        const tick = () => {
          const answers = document.querySelectorAll('#messages li.assistant');
          const top = answers[answers.length - 1]!.getBoundingClientRect().top;
          still = top === last ? still + 1 : 0;
          last = top;
          if (still >= 10) resolve();
          else requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }),
  );
}

/** How far the page's content overflows what shows, whichever element scrolls. */
const overflow = (page: Page) =>
  page.evaluate(() => {
    const list = document.querySelector('#messages')!;
    return Math.max(list.scrollHeight - list.clientHeight, document.documentElement.scrollHeight - window.innerHeight);
  });

const LAYOUTS = [
  { name: 'wide (the list scrolls)', viewport: { width: 1000, height: 420 } },
  { name: 'narrow (the page scrolls)', viewport: { width: 560, height: 640 } },
];

describe.skipIf(!HAVE_CHROMIUM).each(LAYOUTS)('playground scrolling, $name', ({ viewport }) => {
  let page: Page;

  beforeAll(async () => {
    page = await browser.newPage({ viewport });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    // Installed through the browser's debugging protocol, which the page's CSP (no eval) does not govern.
    await page.addInitScript(`window.__measure = ${measure.toString()}`);
    await page.goto(`${stack.edgeUrl}/`);
    await page.fill('#api-key', stack.apiKey);
    await page.waitForSelector(`#model option[value="${stack.modelInfo.modelId}"]`, { state: 'attached' });
    await page.fill('#temperature', '0');
  });

  afterAll(async () => {
    await page?.close();
  });

  it('keeps the newest text and then the stats of a long answer in view while it streams', async () => {
    await page.fill('#max-tokens', '700');
    const samples = await sendAndSample(page, 'Tell me a long story.');
    expect(samples.length, 'text lengths seen while streaming').toBeGreaterThanOrEqual(3);
    // The answer outgrew the window, so staying in view took scrolling.
    expect(await overflow(page)).toBeGreaterThan(200);
    expect(samples.filter((sample) => !sample.endInView)).toEqual([]);
    await page.waitForSelector('#messages li.assistant:last-of-type dl.stats');
    const statsInView = await page.evaluate(() => {
      const stats = document.querySelector('#messages li.assistant:last-of-type dl.stats')!.getBoundingClientRect();
      const list = document.querySelector('#messages')!.getBoundingClientRect();
      return stats.bottom <= Math.min(list.bottom, window.innerHeight) + 1 && stats.top >= 0;
    });
    expect(statsInView).toBe(true);
  });

  it('after a scroll up new text does not pull the view down; scrolling back down or sending follows again', async () => {
    await page.fill('#max-tokens', '');
    await page.fill('#prompt', 'Tell me a very long story.');
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(() => {
      const list = document.querySelector('#messages')!;
      return Math.max(list.scrollHeight - list.clientHeight, document.documentElement.scrollHeight - window.innerHeight) > 400;
    });
    const box = (await page.locator('#messages').boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, (Math.max(box.y, 0) + Math.min(box.y + box.height, viewport.height)) / 2);
    const before = await view(page);
    await page.mouse.wheel(0, -300);
    await page.waitForFunction((top) => {
      const answers = document.querySelectorAll('#messages li.assistant');
      return answers[answers.length - 1]!.getBoundingClientRect().top > top + 100;
    }, before.answerTop);
    await stillAnswer(page);
    const scrolledUp = await view(page);
    await grownBy(page, scrolledUp.length, 300);
    const later = await view(page);
    expect(later.endInView).toBe(false);
    expect(Math.abs(later.answerTop - scrolledUp.answerTop), 'the answer moved while text arrived').toBeLessThanOrEqual(1);

    await page.mouse.wheel(0, 100_000);
    const resumed = await view(page);
    await grownBy(page, resumed.length, 300);
    expect((await view(page)).endInView, 'followed again after scrolling back to the bottom').toBe(true);
    await page.click('#stop-button');
    await page.waitForSelector('#send:enabled');

    // Scrolled away from an ended answer, a new message brings the view to the new answer and follows it.
    await page.mouse.wheel(0, -600);
    await stillAnswer(page);
    await page.fill('#max-tokens', '300');
    const samples = await sendAndSample(page, 'And another one.');
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.filter((sample) => !sample.endInView)).toEqual([]);
  });

  it('raised no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
