import { useQuery, useStatus } from '@powersync/react';
import { useSyncExternalStore } from 'react';

function subscribeOnline(cb: () => void) {
  window.addEventListener('online', cb);
  window.addEventListener('offline', cb);
  return () => {
    window.removeEventListener('online', cb);
    window.removeEventListener('offline', cb);
  };
}

const useBrowserOnline = () => useSyncExternalStore(subscribeOnline, () => navigator.onLine);

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** Online / offline, uploading, changes waiting and the time of the last completed sync. */
export function SyncStatusBar() {
  const status = useStatus();
  const browserOnline = useBrowserOnline();
  // The SDK's upload queue: local changes the server has not confirmed yet.
  const { data: queue } = useQuery<{ n: number }>('SELECT count(*) AS n FROM ps_crud');
  const pending = queue[0]?.n ?? 0;

  const state = !browserOnline ? 'offline' : status.connected ? 'online' : status.connecting ? 'connecting' : 'offline';
  const label = { online: 'Online', connecting: 'Connecting…', offline: 'Offline' }[state];
  const lastSynced = status.lastSyncedAt;

  return (
    <div className="sync-status" data-testid="sync-status" data-state={state} role="status" aria-live="polite">
      <span className={`dot dot-${state}`} aria-hidden="true" />
      <span className="sync-label">{label}</span>
      {pending > 0 && (state !== 'online' || !status.uploading) && (
        // Offline (or between retries): the changes are safe in the local database and go out later.
        <span className="sync-detail" data-testid="sync-pending">
          {pending} {pending === 1 ? 'change' : 'changes'} saved on this device
        </span>
      )}
      {state === 'online' && status.uploading && (
        <span className="sync-detail" data-testid="sync-uploading">
          Uploading…
        </span>
      )}
      <span className="sync-detail" data-testid="sync-last-synced">
        {lastSynced ? `Last synced ${timeFormat.format(lastSynced)}` : status.hasSynced === false ? 'Not synced yet' : ''}
      </span>
    </div>
  );
}
