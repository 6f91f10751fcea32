// Starts GraphiQL 3 (loaded from /vendor by graphiql.html) on this endpoint. The query,
// variables and headers are kept in the URL (?query= is the endpoint's own: q is used).
"use strict";
(function () {
  const url = window.location.href.split("?")[0];
  const params = new URLSearchParams(window.location.search);

  function remember(name, value) {
    if (value) {
      params.set(name, value);
    } else {
      params.delete(name);
    }
    const search = params.toString();
    history.replaceState(null, "", search ? "?" + search : window.location.pathname);
  }

  const EXAMPLE = `# Vajra's GraphQL API: Ctrl-Enter runs the operation, Ctrl-Space completes.
# The docs pane (top left) lists every type and field.
{
  stats { totalThreats critical high last24h sources lastIngestedAt }
  threats(limit: 5, filter: { severity: [CRITICAL] }) {
    total
    items { id title source publishedAt }
  }
}
`;
  const fetcher = GraphiQL.createFetcher({ url: url });
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      query: params.get("q") || undefined,
      defaultQuery: EXAMPLE,
      variables: params.get("variables") || undefined,
      onEditQuery: (value) => remember("q", value),
      onEditVariables: (value) => remember("variables", value),
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    }),
  );
})();
