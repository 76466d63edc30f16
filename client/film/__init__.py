"""The scene generator: a procedural cyberpunk film, a pure function of (spec, t).

`client.film.shots` directs (cuts, camera moves, weather and grade from the intended arc; no
Panda3D), `client.film.street` builds the set (towers, neon signs, flying traffic, rain, dust),
`client.film.render` films it through the post chain (client/post.py: bloom, haze, LUT grade)
and writes H.264 with neonbar.video. `neonbar scene render` and `neonbar.scenes.media_path`
call `render_scene`.
"""
