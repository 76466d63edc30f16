#version 330
// Walls, furniture and people lit by the neon: a handful of point lights with inverse-square
// falloff (a soft core so a tube does not burn a hole in the wall), half-Lambert diffuse and a
// Blinn-Phong sheen. Output is linear HDR.

#ifndef MAX_LIGHTS
#define MAX_LIGHTS 16
#endif

uniform vec4 u_light_pos[MAX_LIGHTS];    // xyz world metres, w unused
uniform vec4 u_light_color[MAX_LIGHTS];  // linear rgb * intensity (watts-ish), w unused
uniform int u_light_count;
uniform vec3 u_ambient;
uniform float u_gloss;       // Blinn-Phong exponent
uniform float u_specular;    // specular strength
uniform sampler2D p3d_Texture0;
uniform vec4 p3d_ColorScale;

uniform float u_scene_gamma;  // 1: linear scene; 2.2: a display-referred scene (see PostSettings)

in vec3 v_world_pos;
in vec3 v_world_normal;
in vec3 v_eye_pos;
in vec4 v_color;
in vec2 v_uv;

out vec4 o_color;

// The chain decodes a display-referred scene with pow(c, scene_gamma); encode to match so the
// linear light computed here arrives intact.
vec3 to_scene(vec3 rgb) {
    return u_scene_gamma == 1.0 ? rgb : pow(max(rgb, vec3(0.0)), vec3(1.0 / u_scene_gamma));
}

void main() {
    vec4 albedo = texture(p3d_Texture0, v_uv) * v_color * p3d_ColorScale;
    vec3 n = normalize(v_world_normal);
    vec3 v = normalize(v_eye_pos - v_world_pos);
    if (dot(n, v) < 0.0) n = -n;  // two-sided cards and mirrored instances
    vec3 diffuse = u_ambient;
    vec3 spec = vec3(0.0);
    for (int i = 0; i < u_light_count; ++i) {
        vec3 d = u_light_pos[i].xyz - v_world_pos;
        float dist2 = dot(d, d) + 0.25;
        vec3 l = d * inversesqrt(dist2);
        vec3 radiance = u_light_color[i].rgb / dist2;
        diffuse += radiance * (0.15 + 0.85 * max(dot(n, l), 0.0));
        vec3 h = normalize(l + v);
        spec += radiance * pow(max(dot(n, h), 0.0), u_gloss);
    }
    o_color = vec4(to_scene(albedo.rgb * diffuse + spec * u_specular), albedo.a);
}
