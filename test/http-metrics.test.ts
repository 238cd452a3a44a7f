import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { AgentLifecycle } from '../src/agent/routes.js';
import { AgentMetrics } from '../src/http/metrics.js';
import { buildApiServer } from '../src/process/socket-server.js';
import { silentLogger } from '../src/util/logger.js';
import { NIC, labTopology, modulesLive, onVfio, rig, stop } from './helpers.js';

/** The value of one series in the exposition text (`name{labels} value`), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

test("metrics after a simulated module loss (two failed reloads): in progress and unhealthy meanwhile, then the loss, the recovery by uevent, one histogram observation equal to the tracker's loss-to-devices-back time, modules live again", async () => {
  const r = await rig(labTopology());
  const m = new AgentMetrics(r.agent, { processMetrics: false });
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    const before = await m.text();
    assert.equal(sample(before, 'passthru_vfio_module_losses_total'), 0);
    assert.equal(sample(before, 'passthru_recovery_duration_seconds_count'), 0);
    assert.equal(sample(before, 'passthru_claims{state="ready"}'), 2);
    assert.equal(sample(before, 'passthru_device_binds_total{outcome="ok"}'), 2);

    // The first two reloads fail, so the recovery is seen in progress and takes backoff time.
    r.kernel.failModuleLoads('vfio_pci', 2);
    for (const mod of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) r.kernel.rmmod(mod);
    await r.clock.advanceUntil(() => r.agent.recoveries.recovering(), 1_000, 1);
    const during = await m.text();
    assert.equal(sample(during, 'passthru_vfio_module_losses_total'), 1);
    assert.equal(sample(during, 'passthru_recovery_in_progress'), 1);
    assert.equal(sample(during, 'passthru_vfio_modules_healthy'), 0);
    assert.equal(sample(during, 'passthru_recovery_duration_seconds_count'), 0);

    await r.clock.advanceUntil(
      () =>
        onVfio(r.kernel, NIC.slice(0, 2)) &&
        modulesLive(r.kernel) &&
        !r.agent.recoveries.recovering(),
      5_000,
      10,
    );
    const rec = r.agent.recoveries.recoveries().at(-1);
    assert.ok(rec?.detectToReboundMs !== null && rec?.detectToReboundMs !== undefined);
    assert.ok(rec.detectToReboundMs > 0, 'the failed reloads took simulated time');
    const after = await m.text();
    assert.equal(sample(after, 'passthru_vfio_module_losses_total'), 1);
    assert.equal(sample(after, 'passthru_recoveries_total{via="uevent"}'), 1);
    assert.equal(sample(after, 'passthru_recoveries_total{via="poll"}'), 0);
    assert.equal(sample(after, 'passthru_recovery_duration_seconds_count'), 1);
    assert.equal(
      sample(after, 'passthru_recovery_duration_seconds_sum'),
      rec.detectToReboundMs / 1000,
    );
    assert.equal(sample(after, 'passthru_recovery_duration_seconds_bucket{le="+Inf"}'), 1);
    assert.equal(sample(after, 'passthru_recovery_in_progress'), 0);
    assert.equal(sample(after, 'passthru_vfio_modules_healthy'), 1);
    assert.equal(sample(after, 'passthru_vfio_module_state{module="vfio_pci",state="live"}'), 1);
    assert.equal(sample(after, 'passthru_vfio_module_state{module="vfio_pci",state="missing"}'), 0);
    assert.equal(sample(after, 'passthru_claims{state="ready"}'), 2);
  } finally {
    m.close();
    await stop(r);
  }
});

test('metrics while vfio-pci cannot come back: module state missing, healthy 0, the claim waiting, no recovery observed', async () => {
  const r = await rig(labTopology());
  const m = new AgentMetrics(r.agent, { processMetrics: false });
  try {
    await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
    r.kernel.setModuleAvailable('vfio_pci', false);
    r.kernel.modprobeRemove('vfio_pci');
    await r.clock.advance(2_000);
    const text = await m.text();
    assert.equal(sample(text, 'passthru_vfio_modules_healthy'), 0);
    assert.equal(sample(text, 'passthru_vfio_module_state{module="vfio_pci",state="missing"}'), 1);
    assert.equal(sample(text, 'passthru_vfio_module_state{module="vfio_pci",state="live"}'), 0);
    assert.equal(sample(text, 'passthru_claims{state="ready"}'), 0);
    assert.equal(sample(text, 'passthru_claims{state="waiting"}'), 1);
    assert.equal(sample(text, 'passthru_recovery_duration_seconds_count'), 0);
  } finally {
    m.close();
    await stop(r);
  }
});

test('module losses seen before the metrics were made are counted: passthru_vfio_module_losses_total equals status losses', async () => {
  const r = await rig(labTopology());
  try {
    await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
    r.kernel.rmmod('vfio_pci');
    await r.clock.advanceUntil(
      () => onVfio(r.kernel, [NIC[0]!]) && modulesLive(r.kernel),
      5_000,
      10,
    );
    assert.equal(r.agent.recoveries.losses(), 1);
    const m = new AgentMetrics(r.agent, { processMetrics: false });
    try {
      assert.equal(sample(await m.text(), 'passthru_vfio_module_losses_total'), 1);
    } finally {
      m.close();
    }
  } finally {
    await stop(r);
  }
});

test('metrics count releases by outcome, and two agents in one process keep separate registries', async () => {
  const a = await rig(labTopology());
  const b = await rig(labTopology());
  const ma = new AgentMetrics(a.agent, { processMetrics: false });
  const mb = new AgentMetrics(b.agent, { processMetrics: false });
  try {
    await a.agent.claim([NIC[0]!], { withGroup: false, force: false });
    await a.agent.release([NIC[0]!]);
    const ta = await ma.text();
    assert.equal(sample(ta, 'passthru_device_binds_total{outcome="ok"}'), 1);
    assert.equal(sample(ta, 'passthru_device_releases_total{outcome="ok"}'), 1);
    assert.equal(sample(ta, 'passthru_device_releases_total{outcome="failed"}'), 0);
    const tb = await mb.text();
    assert.equal(sample(tb, 'passthru_device_binds_total{outcome="ok"}'), 0);
    assert.equal(sample(tb, 'passthru_device_releases_total{outcome="ok"}'), 0);
  } finally {
    ma.close();
    mb.close();
    await stop(a);
    await stop(b);
  }
});

test('process metrics are registered at the first scrape, not when the metrics are made, and the CPU counters then hold the process totals', async () => {
  const r = await rig(labTopology());
  const m = new AgentMetrics(r.agent);
  try {
    assert.equal(m.registry.getSingleMetric('process_cpu_user_seconds_total'), undefined);
    assert.equal(m.registry.getSingleMetric('nodejs_eventloop_lag_seconds'), undefined);
    const used = process.cpuUsage();
    const text = await m.text();
    // The process's totals, not the CPU used since the first scrape.
    assert.ok(sample(text, 'process_cpu_user_seconds_total')! >= used.user / 1e6);
    assert.ok(sample(text, 'process_cpu_seconds_total')! >= (used.user + used.system) / 1e6);
    assert.ok(m.registry.getSingleMetric('nodejs_eventloop_lag_seconds'));
  } finally {
    m.close();
    await stop(r);
  }
});

test('GET /metrics answers the Prometheus text format with process metrics; promtool check metrics passes on it (skipped only where promtool is not installed)', async (t) => {
  const r = await rig(labTopology());
  const metrics = new AgentMetrics(r.agent);
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const server = await buildApiServer(
    { agent: r.agent, sim: r.kernel, lifecycle, logger: silentLogger() },
    {},
    {
      plugins: [
        (app) => {
          metrics.register(app);
        },
      ],
    },
  );
  try {
    await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
    r.kernel.modprobeRemove('vfio_pci');
    await r.clock.advanceUntil(() => onVfio(r.kernel, [NIC[0]!]) && modulesLive(r.kernel), 5_000);
    await r.clock.advance(100);
    const res = await server.app.inject({ url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
    assert.ok(sample(res.body, 'process_resident_memory_bytes')! > 0);
    assert.equal(sample(res.body, 'passthru_recovery_duration_seconds_count'), 1);
    const promtool = spawnSync('promtool', ['check', 'metrics'], {
      input: res.body,
      encoding: 'utf8',
    });
    if (promtool.error && (promtool.error as NodeJS.ErrnoException).code === 'ENOENT') {
      t.skip('promtool is not installed (Debian package prometheus; .ci/run installs it)');
      return;
    }
    assert.equal(promtool.status, 0, `promtool: ${promtool.stdout}${promtool.stderr}`);
  } finally {
    await server.close();
    metrics.close();
    await stop(r);
  }
});
