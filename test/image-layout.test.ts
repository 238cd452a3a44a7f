import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROTO_FILES } from '../src/deviceplugin/proto.js';

/**
 * There is no Docker here: the image's final stage is rebuilt as a folder from the Dockerfile's
 * own COPY lines (node_modules linked, not copied), and the CLI is run from it. The image once
 * lacked proto/, which the device plugin reads at run time.
 */
const repo = process.cwd();
const APP = '/opt/passthru';

function finalStage(): string[] {
  const lines = fs
    .readFileSync(path.join(repo, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim());
  const from = lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  return lines.slice(from);
}

function imageLayout(): { dir: string; entrypoint: string } {
  const stage = finalStage();
  assert.ok(
    stage.some((l) => l === `WORKDIR ${APP}`),
    `final stage works in ${APP}`,
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-image-'));
  for (const l of stage) {
    const m = /^COPY\s+(--from=build\s+)?(\S+)\s+(\S+)$/.exec(l);
    if (m === null) continue;
    const src = m[1] !== undefined ? path.relative('/src', m[2] ?? '') : (m[2] ?? '');
    // As Docker does: a destination ending in '/' is a folder to copy into.
    const to = (m[3] ?? '').endsWith('/') ? path.join(m[3] ?? '', path.basename(src)) : m[3];
    const dst = path.join(dir, path.relative(APP, path.resolve(APP, to ?? '')));
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    if (src === 'node_modules') fs.symlinkSync(path.join(repo, src), dst);
    else fs.cpSync(path.join(repo, src), dst, { recursive: true });
  }
  const ep = stage.find((l) => l.startsWith('ENTRYPOINT'));
  const args = JSON.parse(ep?.slice('ENTRYPOINT'.length) ?? '[]') as string[];
  assert.equal(args[0], 'node');
  return { dir, entrypoint: path.relative(APP, args[1] ?? '') };
}

test("the image's final stage (from the Dockerfile's COPY lines) runs `list` from package.json's bin on a topology only its own topologies/ holds, and holds the device plugin's protos", () => {
  const { dir, entrypoint } = imageLayout();
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
      bin: { passthru: string };
    };
    assert.equal(entrypoint, pkg.bin.passthru);
    for (const rel of Object.values(PROTO_FILES))
      assert.ok(fs.existsSync(path.join(dir, 'proto', rel)), `proto/${rel} in the image`);
    // A topology only the image's copy holds: the bundle must find topologies/ beside itself,
    // not in the tree it was built in.
    const own = JSON.parse(
      fs.readFileSync(path.join(dir, 'topologies', 'qemu-guest.json'), 'utf8'),
    ) as { name: string };
    own.name = 'image-only';
    fs.writeFileSync(path.join(dir, 'topologies', 'image-only.json'), JSON.stringify(own));
    const r = spawnSync(
      process.execPath,
      [
        path.join(dir, entrypoint),
        '--sim',
        'image-only',
        '--state-dir',
        path.join(dir, 's'),
        'list',
        '--json',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const devices = JSON.parse(r.stdout) as { address: string }[];
    assert.ok(devices.some((d) => d.address === '0000:01:00.0'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
