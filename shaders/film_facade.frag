#version 330
// The film's buildings: dark concrete and glass lit by the nearest neon, with a grid of windows
// (procedural, from the world position: no textures to load or filter on a CPU rasteriser).
// Output is linear HDR for client.post.PostChain.

#define MAX_LIGHTS 16

uniform vec4 u_light_pos[MAX_LIGHTS];
uniform vec4 u_light_color[MAX_LIGHTS];
uniform int u_light_count;
uniform vec3 u_ambient;
uniform float u_window_level;   // brightness of lit windows (HDR)
uniform float u_window_share;   // share of windows lit, 0..1
uniform vec3 u_window_warm;     // interior colours, linear
uniform vec3 u_window_cool;

in vec3 v_world_pos;
in vec3 v_world_normal;
in vec3 v_eye_pos;
in vec4 v_color;
in vec2 v_uv;

out vec4 o_color;

float hash21(vec2 p) {
    p = fract(p * vec2(123.34, 456.21));
    p += dot(p, p + 45.32);
    return fract(p.x * p.y);
}

void main() {
    vec3 n = normalize(v_world_normal);
    vec3 albedo = v_color.rgb;
    vec3 emit = vec3(0.0);
    float glass = 0.0;
    if (abs(n.z) < 0.5 && v_world_pos.z > 4.0) {
        float along = abs(n.x) > abs(n.y) ? v_world_pos.y : v_world_pos.x;
        // v_color.a carries the building's window pitch (metres per window column).
        float pitch = mix(1.6, 3.2, v_color.a);
        vec2 cell = vec2(along / pitch, v_world_pos.z / 3.3);
        vec2 id = floor(cell);
        vec2 f = fract(cell);
        float inside = step(0.16, f.x) * step(f.x, 0.84) * step(0.22, f.y) * step(f.y, 0.78);
        float h = hash21(id + floor(v_world_pos.xy * 0.02) * 17.0);
        float lit = step(1.0 - u_window_share, h);
        vec3 tone = mix(u_window_warm, u_window_cool, step(0.72, hash21(id * 1.7 + 3.1)));
        // Lit rooms are brighter near the middle of the pane: a lamp somewhere inside.
        float lamp = 1.0 - 0.6 * length(f - vec2(0.5, 0.45));
        emit = inside * lit * tone * u_window_level * lamp * (0.35 + 1.3 * hash21(id + 7.7));
        glass = inside;
    }
    albedo *= 1.0 - 0.6 * glass;

    vec3 v = normalize(v_eye_pos - v_world_pos);
    if (dot(n, v) < 0.0) n = -n;
    vec3 diffuse = u_ambient;
    vec3 spec = vec3(0.0);
    for (int i = 0; i < u_light_count; ++i) {
        vec3 d = u_light_pos[i].xyz - v_world_pos;
        float dist2 = dot(d, d) + 0.5;
        vec3 l = d * inversesqrt(dist2);
        vec3 radiance = u_light_color[i].rgb / dist2;
        diffuse += radiance * (0.1 + 0.9 * max(dot(n, l), 0.0));
        vec3 hv = normalize(l + v);
        spec += radiance * pow(max(dot(n, hv), 0.0), mix(12.0, 60.0, glass));
    }
    vec3 rgb = albedo * diffuse + spec * mix(0.08, 0.5, glass) + emit;
    o_color = vec4(rgb, 1.0);
}
