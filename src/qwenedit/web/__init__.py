"""The browser playground: static HTML, CSS and JavaScript, with no build step."""
