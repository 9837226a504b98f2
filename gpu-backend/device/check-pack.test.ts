// check.sh's side of the device pack, without a GPU and without the 60 MB of real loads: it refuses a load
// whose SHA256SUMS do not match before unpacking anything, reassembles the full CUDA provider from pieces
// carried in separate loads (in suffix order), prefers it over the sm_90 one only when every piece is
// there, and puts the addon where its RUNPATH finds onnxruntime-node's core. The loads here are small
// stand-ins built the way pack.sh builds them (xz, tar, split, sha256sum).

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CHECK_SH = path.resolve('gpu-backend/device/check.sh');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'check-pack-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const CORE = 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64';

/** A repository copy holding check.sh, cuda-env.sh and pack/load1 (a stand-in node that prints its version). */
function packTree(name: string): { tree: string; pack: string } {
  const tree = path.join(root, name);
  const device = path.join(tree, 'gpu-backend/device');
  const load1 = path.join(device, 'pack/load1');
  fs.mkdirSync(load1, { recursive: true });
  fs.copyFileSync(CHECK_SH, path.join(device, 'check.sh'));
  fs.copyFileSync(path.resolve('gpu-backend/device/cuda-env.sh'), path.join(device, 'cuda-env.sh'));
  const scratch = path.join(tree, 'scratch');
  fs.mkdirSync(path.join(scratch, CORE), { recursive: true });
  fs.writeFileSync(path.join(scratch, CORE, 'libonnxruntime.so.1'), 'core');
  fs.writeFileSync(path.join(scratch, 'node'), '#!/bin/sh\necho v20.0.0-stand-in\n', { mode: 0o755 });
  execFileSync('sh', ['-c', `xz -0 -c node > "${load1}/node.xz" && tar cf - node_modules | xz -0 > "${load1}/node_modules.tar.xz"`], { cwd: scratch });
  fs.writeFileSync(path.join(load1, 'check.mjs'), '');
  fs.writeFileSync(path.join(load1, 'native_session.node'), 'addon');
  return { tree, pack: path.join(device, 'pack') };
}

/** The provider files as pack.sh packs them: tar + xz, whole (load2) or split into `pieces` loads from load3. */
function addProvider(pack: string, kind: 'sm90' | 'full', content: string, pieces = 2): void {
  const files = path.join(pack, `../files-${kind}`);
  fs.mkdirSync(files, { recursive: true });
  fs.writeFileSync(path.join(files, 'libonnxruntime_providers_shared.so'), 'shared');
  // Incompressible text, so the split pieces carry real bytes.
  fs.writeFileSync(
    path.join(files, 'libonnxruntime_providers_cuda.so'),
    `${content}\n${execFileSync('head', ['-c', '6000', '/dev/urandom']).toString('base64')}`,
  );
  if (kind === 'sm90') {
    fs.mkdirSync(path.join(pack, 'load2'));
    execFileSync('sh', ['-c', `tar cf - -C "${files}" . | xz -0 > "${pack}/load2/provider-sm90.tar.xz"`]);
    return;
  }
  const whole = path.join(pack, '../provider-full.tar.xz');
  execFileSync('sh', ['-c', `tar cf - -C "${files}" . | xz -0 > "${whole}"`]);
  const size = fs.statSync(whole).size;
  execFileSync('split', ['-b', String(Math.ceil(size / pieces)), '-d', '-a', '1', whole, `${whole}.`]);
  for (let i = 0; i < pieces; i++) {
    const load = path.join(pack, `load${i + 3}`);
    fs.mkdirSync(load);
    fs.renameSync(`${whole}.${i}`, path.join(load, `provider-full.tar.xz.${i}`));
    fs.writeFileSync(path.join(load, 'provider-full.pieces'), `${pieces}\n`);
  }
}

function seal(pack: string): void {
  for (const load of fs.readdirSync(pack).filter((name) => name.startsWith('load'))) {
    execFileSync('sh', ['-c', "find . -type f ! -name SHA256SUMS -printf '%P\\n' | sort | xargs sha256sum > SHA256SUMS"], { cwd: path.join(pack, load) });
  }
}

function runCheck(tree: string, env: Record<string, string> = {}) {
  const work = path.join(tree, 'work');
  const result = spawnSync('bash', ['gpu-backend/device/check.sh', '--unpack-only'], {
    cwd: tree,
    encoding: 'utf8',
    env: { ...process.env, DEVICE_CHECK_DIR: work, OUT: path.join(work, 'out'), ...env },
  });
  return { ...result, work, core: path.join(work, CORE) };
}

describe('check.sh unpacks the device pack', () => {
  it('reassembles the full provider from pieces in separate loads and prefers it over the sm_90 one', () => {
    const { tree, pack } = packTree('full');
    addProvider(pack, 'sm90', 'pruned');
    addProvider(pack, 'full', 'whole', 3);
    seal(pack);
    const run = runCheck(tree);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('CUDA provider: full (3/3 full pieces here)');
    expect(fs.readFileSync(path.join(run.core, 'libonnxruntime_providers_cuda.so'), 'utf8')).toBe(
      fs.readFileSync(path.join(pack, '../files-full/libonnxruntime_providers_cuda.so'), 'utf8'),
    );
    expect(fs.readFileSync(path.join(run.core, 'libonnxruntime.so.1'), 'utf8')).toBe('core');
    // RUNPATH $ORIGIN/../../../../node_modules/...: the addon's folder is four levels below the core's root.
    const addon = path.join(run.work, 'gpu-backend/native/build/Release/native_session.node');
    expect(fs.existsSync(path.join(path.dirname(addon), '../../../..', CORE, 'libonnxruntime.so.1'))).toBe(true);
    expect(run.stdout).toContain('node v20.0.0-stand-in');
  });

  it('uses the sm_90 provider while a piece of the full one is missing, and says so when asked for the full one', () => {
    const { tree, pack } = packTree('partial');
    addProvider(pack, 'sm90', 'pruned');
    addProvider(pack, 'full', 'whole', 2);
    fs.rmSync(path.join(pack, 'load4'), { recursive: true });
    seal(pack);
    const run = runCheck(tree);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('CUDA provider: sm90 (1/2 full pieces here)');
    expect(fs.readFileSync(path.join(run.core, 'libonnxruntime_providers_cuda.so'), 'utf8')).toMatch(/^pruned\n/);
    const forced = runCheck(tree, { DEVICE_PROVIDER: 'full' });
    expect(forced.status).toBe(2);
    expect(forced.stderr).toContain('the full provider has 1 of 2 pieces here');
  });

  it('refuses a load that does not match its SHA256SUMS before unpacking anything', () => {
    const { tree, pack } = packTree('corrupt');
    addProvider(pack, 'sm90', 'pruned');
    seal(pack);
    fs.appendFileSync(path.join(pack, 'load2/provider-sm90.tar.xz'), 'x');
    const run = runCheck(tree);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('load2 does not match its SHA256SUMS');
    expect(fs.existsSync(path.join(run.work, 'node'))).toBe(false);
  });
});
