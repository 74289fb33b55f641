import { PowerSyncContext } from '@powersync/react';
import { StrictMode, useCallback, useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { AuthScreen } from './components/AuthScreen';
import { api, type User } from './lib/api';
import { closeDatabase, openDatabase, type OpenDatabase } from './lib/powersync';
import { clearRejections } from './lib/rejections';
import { rememberedUser, rememberUser } from './lib/session';
import './styles.css';

type Session =
  | { kind: 'checking' }
  | { kind: 'signed-out'; notice?: string }
  | { kind: 'signed-in'; user: User; open: OpenDatabase };

/**
 * Signs users in and out, and gives the signed-in user's local database to the app through
 * `PowerSyncContext` (so every component can use `usePowerSync`, `useQuery` and `useStatus`).
 */
function Root() {
  const [session, setSessionState] = useState<Session>({ kind: 'checking' });
  // The current session, for callbacks (state updaters must stay free of side effects).
  const current = useRef<Session>(session);
  const setSession = useCallback((next: Session) => {
    current.current = next;
    setSessionState(next);
  }, []);

  const sessionEnded = useCallback(() => {
    // The server no longer knows this session (expired, or signed out in another tab). Local data
    // stays on the device (it may hold changes not uploaded yet) until this user signs in again.
    const s = current.current;
    if (s.kind !== 'signed-in') return;
    void closeDatabase(s.open, { clear: false });
    rememberUser(null);
    setSession({ kind: 'signed-out', notice: 'Your session has ended. Sign in again to keep syncing.' });
  }, [setSession]);

  const signIn = useCallback(
    (user: User) => {
      rememberUser(user);
      const s = current.current;
      if (s.kind === 'signed-in') {
        if (s.user.id === user.id) return;
        void closeDatabase(s.open, { clear: false });
      }
      setSession({ kind: 'signed-in', user, open: openDatabase(user, sessionEnded) });
    },
    [sessionEnded, setSession],
  );

  const signOut = useCallback(async () => {
    const s = current.current;
    if (s.kind !== 'signed-in') return;
    // Delete this user's local data first, so nothing of it is left in this browser.
    await closeDatabase(s.open, { clear: true });
    rememberUser(null);
    clearRejections();
    setSession({ kind: 'signed-out' });
    try {
      await api.logout();
    } catch {
      // Offline: the cookie is HttpOnly; the server session expires on its own.
    }
  }, [setSession]);

  // On start: open the last user's local data at once (works offline), then ask the server
  // (once online) whether the session is still good.
  useEffect(() => {
    const remembered = rememberedUser();
    if (remembered) signIn(remembered);
    const check = () =>
      api.me().then(
        (user) => (user ? signIn(user) : sessionEnded()),
        () => {
          // The server cannot be reached: carry on with the remembered user and local data.
        },
      );
    if (!remembered) {
      // Nobody signed in on this browser (or they signed out): straight to the sign-in screen.
      setSession({ kind: 'signed-out' });
      return;
    }
    if (navigator.onLine) {
      void check();
      return;
    }
    window.addEventListener('online', check, { once: true });
    return () => window.removeEventListener('online', check);
  }, [signIn, sessionEnded, setSession]);

  switch (session.kind) {
    case 'checking':
      return null;
    case 'signed-out':
      return <AuthScreen notice={session.notice} onSignedIn={signIn} />;
    case 'signed-in':
      return (
        <PowerSyncContext.Provider value={session.open.db}>
          <App key={session.user.id} user={session.user} onSignOut={signOut} />
        </PowerSyncContext.Provider>
      );
  }
}

// Production builds cache the app's files in a service worker, so the app opens without a network.
if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js').catch((e: unknown) => console.warn('service worker not registered', e));
  });
}

const container = document.getElementById('root');
if (!container) throw new Error('index.html has no #root element');
createRoot(container).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);
