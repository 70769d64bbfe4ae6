// Health: rolling latency percentiles per query kind, pool use, outage state and the alerts they raise.

export const THRESHOLDS = {
  slow_query_s: 0.5, // one query above this raises slow_query
  p95_target_s: 0.2, // rolling P95 above this raises p95_latency
  p99_target_s: 0.5, // rolling P99 above this raises p99_latency
  pool_utilisation: 0.8, // in use / pool max above this raises pool_utilisation
  window_s: 300, // rolling latency window
  max_samples: 10000,
  min_samples: 20, // samples needed before percentile alerts may fire
  slow_query_hold_s: 60 // slow_query stays active this long after the last slow query
}

// Nearest-rank percentile of sorted values (the definition the Python bridge and the scenarios use).
export function percentile (sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
}

class LatencyWindow {
  constructor (clock) {
    this.clock = clock
    this.samples = [] // [at, seconds], oldest first
  }

  add (seconds) {
    this.samples.push([this.clock.monotonic(), seconds])
    if (this.samples.length > THRESHOLDS.max_samples) this.samples.shift()
  }

  stats () {
    const horizon = this.clock.monotonic() - THRESHOLDS.window_s
    while (this.samples.length && this.samples[0][0] < horizon) this.samples.shift()
    const sorted = this.samples.map((s) => s[1]).sort((a, b) => a - b)
    return {
      count: sorted.length,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1] : null,
      slow: sorted.filter((s) => s > THRESHOLDS.slow_query_s).length
    }
  }
}

export class HealthMonitor {
  constructor (clock) {
    this.clock = clock
    this.overall = new LatencyWindow(clock)
    this.kinds = new Map()
    this.pool = null
    this.downSince = null
    this.lastSlow = null
  }

  observeQuery (kind, seconds) {
    this.overall.add(seconds)
    if (!this.kinds.has(kind)) this.kinds.set(kind, new LatencyWindow(this.clock))
    this.kinds.get(kind).add(seconds)
    if (seconds > THRESHOLDS.slow_query_s) this.lastSlow = { at: this.clock.monotonic(), kind, seconds }
  }

  observePool (inUse, max) {
    this.pool = [inUse, max]
  }

  observeOutage (down) {
    this.downSince = down ? (this.downSince ?? this.clock.monotonic()) : null
  }

  alerts (overall) {
    const t = THRESHOLDS
    const now = this.clock.monotonic()
    const found = []
    const add = (name, severity, message, value, threshold) => found.push({ name, severity, message, value, threshold })
    if (this.lastSlow && now - this.lastSlow.at <= t.slow_query_hold_s) {
      add('slow_query', 'warning', `a ${this.lastSlow.kind} query took ${(this.lastSlow.seconds * 1000).toFixed(0)} ms`, this.lastSlow.seconds, t.slow_query_s)
    }
    if (overall.count >= t.min_samples) {
      if (overall.p95 > t.p95_target_s) add('p95_latency', 'warning', `P95 latency ${(overall.p95 * 1000).toFixed(0)} ms`, overall.p95, t.p95_target_s)
      if (overall.p99 > t.p99_target_s) add('p99_latency', 'critical', `P99 latency ${(overall.p99 * 1000).toFixed(0)} ms`, overall.p99, t.p99_target_s)
    }
    if (this.pool && this.pool[1] && this.pool[0] / this.pool[1] > t.pool_utilisation) {
      add('pool_utilisation', 'warning', `pool ${this.pool[0]}/${this.pool[1]} in use`, this.pool[0] / this.pool[1], t.pool_utilisation)
    }
    if (this.downSince !== null) add('database_down', 'critical', `database down for ${(now - this.downSince).toFixed(1)} s`, now - this.downSince, 0)
    return found
  }

  // The snapshot, in the same shape as the Python bridge's HealthSnapshot.to_dict().
  snapshot () {
    const overall = this.overall.stats()
    const alerts = this.alerts(overall)
    const [inUse, max] = this.pool ?? [null, null]
    return {
      taken_at: new Date().toISOString(),
      healthy: !alerts.length,
      thresholds: THRESHOLDS,
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
