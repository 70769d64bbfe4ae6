import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock } from '../lib/cache.js'
import { HealthMonitor, percentile } from '../lib/health.js'

test('percentiles are nearest-rank', () => {
  const values = Array.from({ length: 100 }, (_, i) => (i + 1) / 1000)
  assert.equal(percentile(values, 50), 0.05)
  assert.equal(percentile(values, 95), 0.095)
  assert.equal(percentile(values, 99), 0.099)
  assert.equal(percentile([], 95), null)
})

test('slow queries, high percentiles, a busy pool and an outage each raise their alert', () => {
  const clock = new ManualClock()
  const monitor = new HealthMonitor(clock)
  for (let i = 0; i < 30; i++) monitor.observeQuery('get_keys', 0.6)
  monitor.observePool(18, 21)
  monitor.observeOutage(true)
  const names = monitor.snapshot().alerts.map((a) => a.name).sort()
  assert.deepEqual(names, ['database_down', 'p95_latency', 'p99_latency', 'pool_utilisation', 'slow_query'])
})

test('a quiet, fast database raises nothing, and the snapshot has the Python bridge shape', () => {
  const monitor = new HealthMonitor(new ManualClock())
  for (let i = 0; i < 30; i++) monitor.observeQuery('get_creds', 0.002)
  monitor.observePool(3, 21)
  const snap = monitor.snapshot()
  assert.equal(snap.healthy, true)
  assert.equal(snap.overall.count, 30)
  assert.equal(snap.pool.max_size, 21)
  assert.deepEqual(Object.keys(snap.latency), ['get_creds'])
})

test('samples older than the window no longer count', () => {
  const clock = new ManualClock()
  const monitor = new HealthMonitor(clock)
  monitor.observeQuery('get_keys', 0.9)
  clock.set(301)
  assert.equal(monitor.snapshot().overall.count, 0)
})
