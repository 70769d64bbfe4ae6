import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock, TTLCache, credsKey } from '../lib/cache.js'

test('an entry ages with the clock and expires only past the TTL', () => {
  const clock = new ManualClock()
  clock.set(100)
  const cache = new TTLCache(5, clock)
  cache.put(credsKey('acme'), '{}', cache.ticket())
  clock.set(105)
  assert.equal(cache.isExpired(cache.get(credsKey('acme'))), false)
  clock.set(105.001)
  assert.equal(cache.isExpired(cache.get(credsKey('acme'))), true)
})

test('a put older than the entry it would replace is dropped', () => {
  const cache = new TTLCache(5, new ManualClock())
  const readStarted = cache.ticket()
  assert.equal(cache.put('k', 'written', cache.ticket()), true)
  assert.equal(cache.put('k', 'read before the write', readStarted), false)
  assert.equal(cache.get('k').value, 'written')
})

test('an invalidated key is never served and blocks older puts in flight', () => {
  const cache = new TTLCache(5, new ManualClock())
  const inFlight = cache.ticket()
  cache.invalidate('k')
  assert.equal(cache.put('k', 'old', inFlight), false)
  assert.equal(cache.get('k'), undefined)
  assert.deepEqual([...cache.valid()], [])
})

test('a TTL that is not positive is refused', () => {
  assert.throws(() => new TTLCache(0, new ManualClock()), /TTL must be positive/)
})
