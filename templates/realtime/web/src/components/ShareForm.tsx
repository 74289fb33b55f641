import { usePowerSync } from '@powersync/react';
import { type FormEvent, useState } from 'react';
import { api, type User } from '../lib/api';
import { shareList } from '../lib/writes';

/**
 * Shares a list by username. Looking the user up needs the server (usernames are not synced);
 * the membership itself is a local write like any other.
 */
export function ShareForm({ listId, me }: { listId: string; me: User }) {
  const db = usePowerSync();
  const [username, setUsername] = useState('');
  const [message, setMessage] = useState<{ kind: 'error' | 'ok'; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const name = username.trim().toLowerCase();
    if (!name) return;
    if (name === me.username) {
      setMessage({ kind: 'error', text: 'This is your own list already.' });
      return;
    }
    setBusy(true);
    setMessage(null);
    try {
      const user = await api.userByUsername(name);
      if (!user) {
        setMessage({ kind: 'error', text: `There is no user called “${name}”.` });
      } else {
        await shareList(db, listId, user);
        setUsername('');
        setMessage({ kind: 'ok', text: `Shared with @${user.username}.` });
      }
    } catch {
      setMessage({ kind: 'error', text: 'Sharing needs a connection to look the user up. Try again when online.' });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="inline-form share" onSubmit={submit}>
      <label className="visually-hidden" htmlFor="share-username">
        Share with username
      </label>
      <input
        id="share-username"
        data-testid="share-username"
        placeholder="Share with username…"
        autoComplete="off"
        value={username}
        onChange={(e) => setUsername(e.target.value)}
      />
      <button type="submit" data-testid="share-submit" disabled={busy || !username.trim()}>
        Share
      </button>
      {message && (
        <p
          className={message.kind === 'error' ? 'error' : 'ok'}
          role={message.kind === 'error' ? 'alert' : 'status'}
          data-testid={message.kind === 'error' ? 'share-error' : 'share-ok'}
        >
          {message.text}
        </p>
      )}
    </form>
  );
}
