// The app's service worker (dist/sw.js is generated from this file by vite.config.ts). It caches
// the files of the build so the app opens offline. API requests and the sync stream never go
// through the cache.
const CACHE = '__CACHE_NAME__';
const PRECACHE = __PRECACHE__;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('realtime-app-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  if (request.mode === 'navigate') {
    // Pages: the network first (a new deploy shows at once), the cached app when offline.
    event.respondWith(
      fetch(request).catch(() => caches.match('/', { cacheName: CACHE }).then((r) => r ?? Response.error())),
    );
    return;
  }
  // Build files have content hashes in their names: a cached copy is always right. Files not
  // precached (e.g. the encryption builds of SQLite) are kept once fetched.
  event.respondWith(
    caches.open(CACHE).then((cache) =>
      cache.match(request).then(
        (cached) =>
          cached ??
          fetch(request).then((response) => {
            if (response.ok && url.pathname.startsWith('/assets/')) void cache.put(request, response.clone());
            return response;
          }),
      ),
    ),
  );
});
