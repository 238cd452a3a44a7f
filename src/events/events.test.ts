import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePciAddress } from '../pci/address.js';
import { EventBus, type DomainEvent } from './events.js';

const e: DomainEvent = { type: 'claim.removed', at: 1, address: parsePciAddress('0000:01:00.0') };

test('EventBus: a throwing subscriber is reported once, counted every time, and the others still get every event', () => {
  const reported: string[] = [];
  const bus = new EventBus({
    onError: (err) => reported.push(err instanceof Error ? err.message : String(err)),
  });
  bus.subscribe(() => {
    throw new Error('disk full');
  });
  const seen: number[] = [];
  bus.subscribe((x) => seen.push(x.at));
  bus.emit(e);
  bus.emit({ ...e, at: 2 });
  bus.emit({ ...e, at: 3 });
  assert.deepEqual(reported, ['disk full']);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(bus.health(), {
    subscriberErrors: 3,
    lastError: 'claim.removed: disk full',
  });
});
