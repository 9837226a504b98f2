// Stop strings matched across token boundaries: text that could still be the start of a stop string is
// held back until the next push proves it is not; on a hit, the text before the stop is all that is released.

export interface StopPush {
  text: string;
  stopped: boolean;
}

export class StopMatcher {
  private held = '';
  private readonly stops: string[];

  constructor(stops: string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(text: string): StopPush {
    const buffer = this.held + text;
    if (this.stops.length === 0) return { text: buffer, stopped: false };
    let hit = -1;
    for (const stop of this.stops) {
      const index = buffer.indexOf(stop);
      if (index !== -1 && (hit === -1 || index < hit)) hit = index;
    }
    if (hit !== -1) {
      this.held = '';
      return { text: buffer.slice(0, hit), stopped: true };
    }
    const keep = this.heldLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  /** The generation ended without a stop string: what was held back is ordinary text. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /** Longest suffix of `buffer` that is a proper prefix of some stop string. */
  private heldLength(buffer: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, buffer.length); length > longest; length--) {
        if (buffer.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
