"""Link-in-bio pages: pages, buttons, themes, CSS sanitising and the public HTML."""
