#version 330
// Rain streaks and wind-blown dust for the film: every drop is a line whose two vertices share
// a random position in the unit cube (p3d_Vertex) and differ in p3d_Color.g (0 head, 1 tail).
// Drops fall with u_velocity through a box that follows the camera, so the weather is a pure
// function of (time, camera): no simulation state, the same frame every time.

uniform mat4 p3d_ViewProjectionMatrix;
uniform vec3 u_cam;          // camera position, world metres
uniform vec3 u_box;          // size of the weather box around the camera, metres
uniform vec3 u_velocity;     // metres per second
uniform float u_time;        // scene time, seconds
uniform float u_streak_s;    // streak length as exposure time (motion blur), seconds
uniform float u_density;     // share of drops drawn, 0..1

in vec4 p3d_Vertex;
in vec4 p3d_Color;

out float v_alpha;

void main() {
    vec3 world = p3d_Vertex.xyz * u_box + u_velocity * u_time;
    vec3 rel = (fract((world - u_cam) / u_box) - 0.5) * u_box;
    vec3 head = u_cam + rel;
    vec3 p = head - u_velocity * u_streak_s * p3d_Color.g;
    float keep = step(p3d_Color.r, u_density);
    // Fade toward the box's faces so drops never pop in or out, and near the lens.
    vec3 edge = abs(rel) / (0.5 * u_box);
    float fade = 1.0 - smoothstep(0.7, 1.0, max(max(edge.x, edge.y), edge.z));
    float dist = length(rel);
    fade *= smoothstep(0.4, 2.0, dist);
    v_alpha = keep * fade * (0.55 + 0.45 * p3d_Color.b) * (1.0 - 0.6 * p3d_Color.g);
    gl_Position = keep > 0.5 ? p3d_ViewProjectionMatrix * vec4(p, 1.0) : vec4(0.0, 0.0, -2.0, 1.0);
}
