// The error taxonomy of the bridge contract, by name (docs/BRIDGE_CONTRACT.md). Attributes never hold secrets.

export const READ_ONLY = 'read_only'
export const CACHE_EXPIRED = 'cache_expired'
export const CACHE_MISS = 'cache_miss'
export const OUTCOME_UNKNOWN = 'outcome_unknown'
export const DATABASE_UNAVAILABLE = 'database_unavailable'
export const CORRUPTED = 'corrupted'
export const INVALID_INPUT = 'invalid_input'
export const STORE_ERROR = 'store_error'

export class BridgeError extends Error {
  // kind: one of the names above; attrs: what an operator needs to act (host, port, key, age_s, ...).
  constructor (kind, message, attrs = {}) {
    super(message)
    this.kind = kind
    this.attrs = attrs
  }

  toWire () {
    return { name: this.kind, message: this.message, ...this.attrs }
  }
}

export const invalidInput = (message, field, where = null) => new BridgeError(INVALID_INPUT, message, { field, where })
