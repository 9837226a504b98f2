// Progress of a long model conversion (reading shards, converting layer i of N, writing the graph): a bar
// redrawn in place on a terminal, plain lines (every 10%) in logs. Written straight to fd 2, because the
// build runs in the engine thread, whose process.stderr only reaches the terminal through the main thread.

import fs from 'node:fs';
import tty from 'node:tty';

const BAR_WIDTH = 30;

export class BuildProgress {
  private readonly startedAt = performance.now();
  private readonly terminal: boolean;
  private lastTenth = -1;
  private open = false;

  private readonly write: (text: string) => void;

  /** `total` units of work; `write` defaults to stderr (fd 2), drawn as a bar when fd 2 is a terminal. */
  constructor(
    private readonly label: string,
    private readonly total: number,
    write?: (text: string) => void,
    terminal?: boolean,
  ) {
    this.write = write ?? ((text) => fs.writeSync(2, text));
    this.terminal = terminal ?? (write === undefined && tty.isatty(2));
  }

  private elapsed(): string {
    return `${((performance.now() - this.startedAt) / 1000).toFixed(1)} s`;
  }

  /** A line of its own (a stage: reading, writing), closing the bar first on a terminal. */
  line(message: string): void {
    if (this.open) this.write('\n');
    this.open = false;
    this.write(`${this.label}: ${message}\n`);
  }

  /** `done` of `total` units finished, `what` being the unit just done ("layer 3/32"). */
  update(done: number, what: string): void {
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    if (this.terminal) {
      const filled = Math.round(fraction * BAR_WIDTH);
      this.write(`\r${this.label}: [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${Math.round(fraction * 100)}% ${what} (${this.elapsed()})\x1b[K`);
      this.open = true;
      return;
    }
    const tenth = Math.floor(fraction * 10);
    if (tenth === this.lastTenth) return;
    this.lastTenth = tenth;
    this.write(`${this.label}: ${Math.round(fraction * 100)}% ${what} (${this.elapsed()})\n`);
  }

  /** The closing line, with the total time. */
  finish(message: string): void {
    this.line(`${message} (${this.elapsed()})`);
  }
}
