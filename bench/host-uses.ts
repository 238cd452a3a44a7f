/**
 * Cost of tracing what backs every mount on a container node: one ext4 root on an nvme, then
 * N docker-style overlays (layers on /) and N tmpfs shm mounts. Prints a table; asserts
 * nothing. Usage: node dist/bench/host-uses.js [runs]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { readHostUses } from '../src/host/linux/host-uses.js';

const runs = Number(process.argv[2] ?? 5);

function tree(n: number): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-bench-uses-'));
  const put = (rel: string, text: string): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  const part = 'sys/devices/pci0000:00/0000:00:01.3/0000:04:00.0/nvme/nvme0/nvme0n1/nvme0n1p2';
  put(`${part}/partition`, '2\n');
  fs.mkdirSync(path.join(root, 'sys/dev/block'), { recursive: true });
  fs.symlinkSync(path.join(root, part), path.join(root, 'sys/dev/block/259:2'));
  const lines = ['1 0 259:2 / / rw - ext4 /dev/nvme0n1p2 rw'];
  for (let i = 0; i < n; i++) {
    const d = `/var/lib/docker/overlay2/c${i}`;
    lines.push(
      `${10 + i} 1 0:${100 + i} / ${d}/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A${i}:/var/lib/docker/overlay2/l/B${i},upperdir=${d}/diff,workdir=${d}/work`,
      `${100_000 + i} 1 0:${200_000 + i} / /run/containers/c${i}/shm rw - tmpfs shm rw`,
    );
  }
  put('proc/self/mountinfo', `${lines.join('\n')}\n`);
  put(
    'proc/net/route',
    'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n',
  );
  return root;
}

console.log('mounts  ms per hostUses (median of runs)');
for (const n of [50, 500, 2000]) {
  const root = tree(n);
  try {
    await readHostUses(root);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const r = await readHostUses(root);
      times.push(performance.now() - t0);
      if (r.unknown.length > 0) throw new Error(`untraced: ${r.unknown.join('; ')}`);
    }
    times.sort((a, b) => a - b);
    console.log(
      `${String(2 * n + 1).padStart(6)}  ${(times[Math.floor(times.length / 2)] ?? 0).toFixed(1)}`,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
