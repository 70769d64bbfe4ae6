import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock } from '../lib/cache.js'
import { AuthBridge } from '../lib/auth-state.js'
import { HealthMonitor, checkThresholds, percentile } from '../lib/health.js'

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

test('each alert is reported once when it starts and once when it ends, a slow query after its hold', () => {
  const clock = new ManualClock()
  const changes = []
  const thresholds = checkThresholds({ slow_query_hold_s: 1 })
  const monitor = new HealthMonitor(clock, { thresholds, onAlert: (change, alert) => changes.push([change, alert.name]) })
  monitor.observeQuery('get_keys', 0.7)
  monitor.observeQuery('get_keys', 0.9)
  monitor.observePool(18, 21)
  monitor.observePool(19, 21)
  assert.deepEqual(changes, [['raised', 'slow_query'], ['raised', 'pool_utilisation']])
  assert.equal(monitor.snapshot().alerts[0].value, 0.9)
  clock.set(1.5)
  monitor.observePool(1, 21)
  assert.deepEqual(changes.slice(2), [['cleared', 'slow_query'], ['cleared', 'pool_utilisation']])
  assert.equal(monitor.snapshot().healthy, true)
})

test('thresholds: production targets by default, changed by name, an unknown name or a bad value refused', () => {
  assert.equal(checkThresholds().slow_query_hold_s, 60)
  assert.equal(checkThresholds({ slow_query_hold_s: 1 }).slow_query_hold_s, 1)
  assert.throws(() => checkThresholds({ slow_query_hold: 1 }), /unknown health threshold slow_query_hold/)
  assert.throws(() => checkThresholds({ p95_target_s: 'fast' }), /p95_target_s must be a finite number/)
  assert.throws(() => checkThresholds([]), /health must be an object/)
})

test('a bridge reports alert transitions as events, and health.reset starts a new window', async () => {
  const clock = new ManualClock()
  // No statement runs here: pg connects lazily, so the bridge needs no server for this.
  const bridge = new AuthBridge({ dsn: 'host=localhost dbname=unit sslmode=disable' }, { clock, health: { slow_query_hold_s: 1 } })
  const events = []
  bridge.on('bridge-event', (e) => events.push([e.kind, e.details.name]))
  bridge.monitor.observeQuery('get_keys', 0.7)
  assert.deepEqual(events, [['alert_raised', 'slow_query']])
  assert.equal(bridge.monitor.snapshot().thresholds.slow_query_hold_s, 1)
  bridge.resetHealth()
  const snap = bridge.monitor.snapshot()
  assert.equal(snap.overall.count, 0)
  assert.deepEqual(snap.alerts, [])
  assert.equal(bridge.store.monitor, bridge.monitor)
  assert.throws(() => new AuthBridge({ dsn: 'host=localhost sslmode=disable' }, { health: { hold: 1 } }), /unknown health threshold hold/)
  await bridge.close()
})
