// /docs: Swagger UI over /openapi.json. A file, not an inline script, because the page's CSP
// allows scripts from this origin only; the spec URL comes from the page's data attribute.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    // No calls to validator.swagger.io or any other host: the page works offline.
    validatorUrl: null,
  });
});
