/**
 * Opening a store in a test: initialised, and closed when the test ends.
 */
import type { TeardownOwner } from './teardown-owner'
import type { BindingStore } from '../../lib/store/binding-store'

/** @returns the store, initialised; it is closed in the test's teardown (registered before `init`, so a failed init still closes it). */
export async function openStore<S extends BindingStore> (t: TeardownOwner, store: S): Promise<S> {
  t.teardown(() => store.close())
  await store.init()
  return store
}
