import { useQuery } from '@powersync/react';
import { useState } from 'react';
import { ListsPanel } from './components/ListsPanel';
import { ListView } from './components/ListView';
import { RejectionBanner } from './components/RejectionBanner';
import { SyncStatusBar } from './components/SyncStatusBar';
import type { User } from './lib/api';

export function App({ user, onSignOut }: { user: User; onSignOut: () => Promise<void> }) {
  const [selected, setSelected] = useState<string | null>(null);
  const [signingOut, setSigningOut] = useState(false);
  // Forget the selection when the list goes away (deleted here, elsewhere, or unshared).
  const { data: stillThere } = useQuery<{ id: string }>('SELECT id FROM lists WHERE id = ?', [selected]);
  const selectedId = selected && stillThere.length > 0 ? selected : null;

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">realtime-app</span>
        <SyncStatusBar />
        <div className="account">
          <span data-testid="current-user" aria-label="Signed in as">
            @{user.username}
          </span>
          <button
            className="ghost"
            data-testid="sign-out"
            disabled={signingOut}
            onClick={() => {
              setSigningOut(true);
              void onSignOut();
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <RejectionBanner />
      <main className="layout">
        <ListsPanel me={user} selectedId={selectedId} onSelect={setSelected} />
        {selectedId ? (
          <ListView key={selectedId} me={user} listId={selectedId} />
        ) : (
          <section className="card placeholder" aria-label="No list selected">
            <p>Pick a list on the left, or create one.</p>
          </section>
        )}
      </main>
    </div>
  );
}
