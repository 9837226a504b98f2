// Debian's Chromium for the browser tests, driven by playwright-core with its executablePath (no browser
// download). Without it a test run says it skipped and how to install it; under CI it fails instead.

import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
export const INSTALL_HINT = 'apt-get install -y chromium (Debian/Ubuntu), or set CHROMIUM_PATH to a Chromium or Chrome binary';
/** Without the network flags Chromium keeps trying to reach Google's services from a closed network. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Throws under CI, warns otherwise, when there is no Chromium: call once per browser test file. */
export function requireChromium(what: string): void {
  if (HAVE_CHROMIUM) return;
  if (process.env.CI) throw new Error(`CI must run ${what}, but there is no Chromium at ${CHROMIUM}: ${INSTALL_HINT}`);
  console.warn(`\n  SKIPPED ${what}: no Chromium at ${CHROMIUM}.\n  Install it: ${INSTALL_HINT}\n`);
}
