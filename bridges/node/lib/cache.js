// The credential and key cache: each entry remembers when it was known current; the reader judges the TTL.

export const credsKey = (company) => JSON.stringify(['creds', company])
export const keyKey = (company, type, id) => JSON.stringify(['key', company, type, id])
export const parseKey = (key) => JSON.parse(key)

const INVALID = Symbol('invalidated')

// Every put carries a ticket taken when its knowledge became current (a read's start, a write's commit):
// a put older than the entry it would replace is dropped, so a slow read never overwrites a newer write.
export class TTLCache {
  constructor (ttlS, clock) {
    if (!(ttlS > 0)) throw new Error(`cache TTL must be positive, got ${ttlS}`)
    this.ttlS = ttlS
    this.clock = clock
    this.entries = new Map()
    this.seq = 0
  }

  ticket () {
    return { seq: ++this.seq, at: this.clock.monotonic() }
  }

  get (key) {
    const entry = this.entries.get(key)
    return entry && entry.value !== INVALID ? entry : undefined
  }

  put (key, value, ticket) {
    const current = this.entries.get(key)
    if (current && current.seq > ticket.seq) return false
    this.entries.set(key, { value, fetchedAt: ticket.at, seq: ticket.seq })
    return true
  }

  // Forget key, and block older puts still in flight.
  invalidate (key) {
    this.entries.set(key, { value: INVALID, fetchedAt: -Infinity, seq: ++this.seq })
  }

  age (entry) {
    return this.clock.monotonic() - entry.fetchedAt
  }

  isExpired (entry) {
    return this.age(entry) > this.ttlS
  }

  * valid () {
    for (const [key, entry] of [...this.entries]) if (entry.value !== INVALID) yield [key, entry]
  }
}

export class SystemClock {
  monotonic () {
    return performance.now() / 1000
  }
}

// A clock that moves only when told: contract requests with "now" set it (clock="manual").
export class ManualClock {
  constructor () {
    this.now = 0
  }

  set (now) {
    this.now = Math.max(this.now, now)
  }

  monotonic () {
    return this.now
  }
}
