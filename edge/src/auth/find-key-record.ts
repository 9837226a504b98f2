// Operators look a key up by its id (GET /admin/keys/:keyId/limits). KV is keyed by secret hash, so this lists
// the namespace: fine for an operator route, never on the request path.

import type { EdgeConfig } from '../config';
import { DEV_KEY_ID, KEY_PREFIX, devKeyRecord, keyRecordSchema, type KeyRecord } from './api-key-store';

export async function findKeyRecord(kv: KVNamespace, keyId: string, config: Pick<EdgeConfig, 'devApiKey'>): Promise<KeyRecord | null> {
  if (keyId === DEV_KEY_ID) return config.devApiKey ? devKeyRecord() : null;
  let cursor: string | undefined;
  do {
    const page = await kv.list({ prefix: KEY_PREFIX, cursor });
    for (const entry of page.keys) {
      const parsed = keyRecordSchema.safeParse(await kv.get(entry.name, 'json'));
      if (parsed.success && parsed.data.keyId === keyId) return parsed.data;
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return null;
}
