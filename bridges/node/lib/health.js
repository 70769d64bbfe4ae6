// Health: rolling latency percentiles per query kind, pool use, outage state and the alerts they raise.

import { invalidInput } from './errors.js'
import { quote } from './ids.js'

// The production targets; configure's `health` setting may change any of them (a drill scales the windows).
export const THRESHOLDS = Object.freeze({
  slow_query_s: 0.5, // one query above this raises slow_query
  p95_target_s: 0.2, // rolling P95 above this raises p95_latency
  p99_target_s: 0.5, // rolling P99 above this raises p99_latency
  pool_utilisation: 0.8, // in use / pool max above this raises pool_utilisation
  expired_keys: 500, // the cleanup job's threshold: this twin has no cleanup job, so it never raises it
  window_s: 300, // rolling latency window
  max_samples: 10000,
  min_samples: 20, // samples needed before percentile alerts may fire
  slow_query_hold_s: 60 // slow_query stays active this long after the last slow query
})
const ALERT_ORDER = ['slow_query', 'p95_latency', 'p99_latency', 'pool_utilisation', 'expired_keys', 'database_down']

// The thresholds with the given changes; an unknown name or a value that is not a positive number is refused.
export function checkThresholds (changes = {}) {
  if (changes === null || typeof changes !== 'object' || Array.isArray(changes)) {
    throw invalidInput(`health must be an object of thresholds, got ${quote(changes)}`, 'health')
  }
  for (const [name, value] of Object.entries(changes)) {
    if (!(name in THRESHOLDS)) throw invalidInput(`unknown health threshold ${name}`, 'health')
    if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
      throw invalidInput(`health threshold ${name} must be a finite number >= 0, got ${quote(value)}`, name)
    }
  }
  return { ...THRESHOLDS, ...changes }
}

// Nearest-rank percentile of sorted values (the definition the Python bridge and the scenarios use).
export function percentile (sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
}

class LatencyWindow {
  constructor (clock, thresholds) {
    this.clock = clock
    this.t = thresholds
    this.samples = [] // [at, seconds], oldest first
  }

  add (seconds) {
    this.samples.push([this.clock.monotonic(), seconds])
    if (this.samples.length > this.t.max_samples) this.samples.shift()
  }

  stats () {
    const horizon = this.clock.monotonic() - this.t.window_s
    while (this.samples.length && this.samples[0][0] <= horizon) this.samples.shift()
    const sorted = this.samples.map((s) => s[1]).sort((a, b) => a - b)
    return {
      count: sorted.length,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1] : null,
      slow: sorted.filter((s) => s > this.t.slow_query_s).length
    }
  }
}

// Alerts are raised once while their condition lasts and cleared when it ends: onAlert('raised'|'cleared',
// alert) hears each transition, after every observation and every snapshot (time-based conditions end then).
export class HealthMonitor {
  constructor (clock, { thresholds = THRESHOLDS, onAlert = () => {} } = {}) {
    this.clock = clock
    this.t = thresholds
    this.onAlert = onAlert
    this.overall = new LatencyWindow(clock, thresholds)
    this.kinds = new Map()
    this.pool = null
    this.downSince = null
    this.lastSlow = null
    this.active = new Map() // name -> alert
  }

  observeQuery (kind, seconds) {
    this.overall.add(seconds)
    if (!this.kinds.has(kind)) this.kinds.set(kind, new LatencyWindow(this.clock, this.t))
    this.kinds.get(kind).add(seconds)
    if (seconds > this.t.slow_query_s) {
      // Active until a hold has passed since the last slow query; it names the slowest one meanwhile.
      const now = this.clock.monotonic()
      const held = this.lastSlow && now - this.lastSlow.at < this.t.slow_query_hold_s
      const slowest = held && this.lastSlow.seconds > seconds ? this.lastSlow : { kind, seconds }
      this.lastSlow = { at: now, kind: slowest.kind, seconds: slowest.seconds }
    }
    this.evaluate()
  }

  observePool (inUse, max) {
    this.pool = [inUse, max]
    this.evaluate()
  }

  observeOutage (down) {
    this.downSince = down ? (this.downSince ?? this.clock.monotonic()) : null
    this.evaluate()
  }

  conditions (overall) {
    const t = this.t
    const now = this.clock.monotonic()
    const found = new Map()
    const add = (name, severity, message, value, threshold) => found.set(name, { name, severity, message, value, threshold })
    if (this.lastSlow && now - this.lastSlow.at < t.slow_query_hold_s) {
      add('slow_query', 'warning', `a ${this.lastSlow.kind} query took ${(this.lastSlow.seconds * 1000).toFixed(0)} ms, above ${t.slow_query_s} s`, this.lastSlow.seconds, t.slow_query_s)
    }
    if (overall.count >= t.min_samples) {
      if (overall.p95 > t.p95_target_s) add('p95_latency', 'warning', `P95 latency ${(overall.p95 * 1000).toFixed(0)} ms over ${overall.count} queries`, overall.p95, t.p95_target_s)
      if (overall.p99 > t.p99_target_s) add('p99_latency', 'critical', `P99 latency ${(overall.p99 * 1000).toFixed(0)} ms over ${overall.count} queries`, overall.p99, t.p99_target_s)
    }
    if (this.pool && this.pool[1] && this.pool[0] / this.pool[1] > t.pool_utilisation) {
      add('pool_utilisation', 'warning', `connection pool ${this.pool[0]}/${this.pool[1]} in use`, this.pool[0] / this.pool[1], t.pool_utilisation)
    }
    if (this.downSince !== null) add('database_down', 'critical', `database down for ${(now - this.downSince).toFixed(1)} s`, now - this.downSince, 0)
    return found
  }

  // Compare the conditions with the active alerts; report each start and end once.
  evaluate (overall = this.overall.stats()) {
    const found = this.conditions(overall)
    for (const name of ALERT_ORDER) {
      const cond = found.get(name)
      if (cond && !this.active.has(name)) {
        this.active.set(name, cond)
        this.onAlert('raised', cond)
      } else if (cond) {
        this.active.set(name, cond) // the same alert, its value kept current, no new event
      } else if (this.active.has(name)) {
        const ended = this.active.get(name)
        this.active.delete(name)
        this.onAlert('cleared', ended)
      }
    }
    return ALERT_ORDER.filter((n) => this.active.has(n)).map((n) => this.active.get(n))
  }

  // The snapshot, in the same shape as the Python bridge's HealthSnapshot.to_dict().
  snapshot () {
    const overall = this.overall.stats()
    const alerts = this.evaluate(overall)
    const [inUse, max] = this.pool ?? [null, null]
    return {
      taken_at: new Date().toISOString(),
      healthy: !alerts.length,
      thresholds: this.t,
      overall,
      latency: Object.fromEntries([...this.kinds].sort().map(([kind, w]) => [kind, w.stats()])),
      slow_queries: overall.slow,
      pool: { in_use: inUse, max_size: max, utilisation: max ? inUse / max : null },
      database_down: this.downSince !== null,
      down_for_s: this.downSince !== null ? this.clock.monotonic() - this.downSince : null,
      alerts
    }
  }
}
