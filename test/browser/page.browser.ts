// The page in a real browser (Debian's Chromium, driven by playwright-core): a real agent on a
// simulated host, a claim through the page, a module loss poked from outside with the CLI, and
// the loss and its recovery appearing on the page without a reload. Run by `npm run
// test:browser` (and .ci/run); not part of `npm test`, which stays fast. Screenshots go to
// ci-artifacts/screenshots/.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const main = path.join(root, 'dist/bundle/passthru.js');
const shots = path.join(root, 'ci-artifacts/screenshots');
const NIC = '0000:01:00.0';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

function log(s: string): void {
  process.stdout.write(`${s}\n`);
}

async function cli(stateDir: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [
    main,
    '--sim',
    'qemu-guest',
    '--state-dir',
    stateDir,
    ...args,
  ]);
  return stdout;
}

/** Starts the agent and resolves with the URL it prints. */
async function startAgent(stateDir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      main,
      '--sim',
      'qemu-guest',
      '--state-dir',
      stateDir,
      '--log-level',
      'warn',
      'agent',
      '--listen',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      out += s;
      const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) => {
      reject(new Error(`agent exited (${code ?? 'signal'}) before printing its URL:\n${out}`));
    });
  });
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
  log(`  screenshot ${path.join('ci-artifacts/screenshots', `${name}.png`)}`);
}

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'passthru-browser-'));
const stateDir = path.join(tmp, 'state');
await fs.mkdir(stateDir, { mode: 0o700 });
await fs.mkdir(shots, { recursive: true });
const agent = await startAgent(stateDir);
log(`agent on ${agent.url}`);
const ctx = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
  // Sections swapped in by a live update flash; without motion the screenshots show the page.
  reducedMotion: 'reduce',
});
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(10_000);

  log('devices: filter to network controllers, then claim a NIC');
  await page.goto(`${agent.url}/devices`);
  await page.getByLabel('Class').selectOption('0200');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/class=0200/);
  const rows = await page.locator('#devices tbody tr').count();
  assert.equal(rows, 5, 'qemu-guest has five Ethernet functions');
  await shot(page, 'devices');
  await page.locator('#devices tr', { hasText: NIC }).getByRole('link', { name: 'Claim…' }).click();

  log('confirm: sign in with the token, then read the preview and confirm');
  const token = (await cli(stateDir, 'token')).trim();
  await page.getByLabel('Agent token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Confirm claim' }).waitFor();
  const writes = await page.locator('table.writes tbody tr').allInnerTexts();
  assert.deepEqual(
    writes.map((w) => w.split('\t').slice(1).filter(Boolean).join(' ')),
    [
      `/sys/bus/pci/devices/${NIC}/driver_override vfio-pci`,
      `/sys/bus/pci/devices/${NIC}/driver/unbind ${NIC} leaves e1000e`,
      `/sys/bus/pci/drivers_probe ${NIC}`,
    ],
  );
  await shot(page, 'confirm-claim', false);
  await page.getByRole('button', { name: 'Confirm claim' }).click();
  await page.waitForURL(/claimed=/);
  await page
    .locator('#claims tbody tr', { hasText: NIC })
    .first()
    .locator('.badge', { hasText: 'ready' })
    .waitFor();
  await page.locator('#live.on').waitFor();

  log('loss: sim modprobe-r vfio_pci from the CLI; the page must show it without a reload');
  // Browser-side code as strings: this project compiles without the DOM library.
  await page.evaluate('window.notReloaded = true');
  const t0 = performance.now();
  await cli(stateDir, 'sim', 'modprobe-r', 'vfio_pci');
  const t1 = performance.now();
  // Polled with page.evaluate (the DevTools protocol, which the page's CSP allows), not
  // waitForFunction (whose string predicate the CSP's script-src 'self' refuses to eval).
  const shown = `(() => {
    const events = document.querySelector('#events')?.textContent ?? '';
    const rows = document.querySelectorAll('#timeline tbody tr:not(.open)');
    return events.includes('module.lost') && events.includes('recovery.completed') &&
      [...rows].some((r) => / ms/.test(r.textContent ?? ''));
  })()`;
  while ((await page.evaluate(shown)) !== true) {
    assert.ok(performance.now() - t1 < 2_000, 'loss and recovery on the page within 2 s');
    await sleep(20);
  }
  const seen = performance.now();
  assert.equal(await page.evaluate('window.notReloaded'), true, 'the page was not reloaded');
  const row = await page.locator('#timeline tbody tr').first().innerText();
  log(
    `  poke CLI took ${Math.round(t1 - t0)} ms; loss and recovery on the page ${Math.round(seen - t1)} ms after it returned (${Math.round(seen - t0)} ms after it started)`,
  );
  log(`  timeline row: ${row.replace(/\s+/g, ' ')}`);
  await shot(page, 'overview');

  log('release through the page');
  await page
    .locator('#claims tr', { hasText: NIC })
    .getByRole('link', { name: 'Release…' })
    .click();
  const back = await page.locator('table.writes tbody tr').allInnerTexts();
  assert.ok(
    back.some((w) =>
      w.includes(`/sys/bus/pci/devices/${NIC}/driver/unbind\t${NIC}\tleaves vfio-pci`),
    ),
    back.join('\n'),
  );
  await shot(page, 'confirm-release', false);
  await page.getByRole('button', { name: 'Confirm release' }).click();
  await page.waitForURL(/released=/);
  await page.locator('#claims', { hasText: 'Nothing is claimed' }).waitFor();
  const status = JSON.parse(await cli(stateDir, 'status', '--json')) as { claims: unknown[] };
  assert.equal(status.claims.length, 0);

  log('the other views, and a phone-sized screen');
  await page.goto(`${agent.url}/groups`);
  await shot(page, 'groups');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${agent.url}/`);
  await shot(page, 'phone-overview', false);
  await page.goto(`${agent.url}/devices`);
  await shot(page, 'phone-devices', false);

  log('keyboard: the skip link is the first stop and shows when focused');
  await page.goto(`${agent.url}/`);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate('document.activeElement.textContent'), 'Skip to content');
  log('browser test passed');
} finally {
  await ctx.close();
  await agent.stop();
  await fs.rm(tmp, { recursive: true, force: true });
}
