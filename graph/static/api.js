// The dashboard's one GraphQL operation, sent by GET with its persisted-query hash so that the
// whole-operation cache (and its ETag) serves it; registered by POST when the server does not
// know the hash yet, as Apollo's APQ clients do.
import { sha256 } from "./sha256.js";

export const DASHBOARD = `query Dashboard($days: Int!, $page: Int!, $limit: Int!, $sources: Int!, $filter: ThreatFilter) {
  stats { totalThreats critical high medium low info last24h sources lastIngestedAt }
  trend(days: $days) { date count }
  severityBreakdown { severity count }
  sourceBreakdown(limit: $sources) { source count }
  threats(page: $page, limit: $limit, filter: $filter) {
    total page limit hasNextPage
    items {
      id source externalId title description severity category tags url publishedAt
      indicators { kind value }
    }
  }
}`;

const ENDPOINT = "/graphql";
let digest = null;

function notFound(body) {
  return (body.errors || []).some(
    (e) => (e.extensions || {}).code === "PERSISTED_QUERY_NOT_FOUND",
  );
}

function urlFor(variables, hash) {
  const params = new URLSearchParams({
    operationName: "Dashboard",
    variables: JSON.stringify(variables),
    extensions: JSON.stringify({ persistedQuery: { version: 1, sha256Hash: hash } }),
  });
  return `${ENDPOINT}?${params}`;
}

async function register(variables, hash) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({
      query: DASHBOARD,
      operationName: "Dashboard",
      variables,
      extensions: { persistedQuery: { version: 1, sha256Hash: hash } },
    }),
  });
  if (!response.ok) throw new Error(`registering the dashboard query: HTTP ${response.status}`);
  return response.json();
}

// { etag, body } for these variables; body is null when the answer has the ETag `known`
// (the browser revalidated its copy and got a 304, or the server recomputed the same answer).
export async function load(variables, known) {
  digest = digest || (await sha256(DASHBOARD));
  // no-cache: the browser sends If-None-Match with the ETag of what it holds and reuses
  // its copy on a 304, so an unchanged dashboard costs a few hundred bytes a poll.
  const response = await fetch(urlFor(variables, digest), {
    cache: "no-cache",
    headers: { accept: "application/json" },
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const etag = response.headers.get("etag");
  if (etag && etag === known) return { etag, body: null };
  const body = await response.json();
  if (notFound(body)) return { etag: null, body: await register(variables, digest) };
  return { etag, body };
}
