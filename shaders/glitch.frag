#version 330
// A poor connection made visible on an avatar: horizontal slices tear sideways, colour splits
// into red and cyan fringes and scanlines drop out. Strength 0 leaves the avatar untouched.

uniform float u_glitch;       // 0..1
uniform float osg_FrameTime;
uniform sampler2D p3d_Texture0;
uniform vec4 p3d_ColorScale;

uniform float u_scene_gamma;  // 1: linear scene; 2.2: a display-referred scene (see PostSettings)

in vec3 v_world_pos;
in vec3 v_world_normal;
in vec3 v_eye_pos;
in vec4 v_color;
in vec2 v_uv;

out vec4 o_color;

float hash11(float n) { return fract(sin(n * 12.9898 + 78.233) * 43758.5453); }

// The chain decodes a display-referred scene with pow(c, scene_gamma); encode to match so the
// linear light computed here arrives intact.
vec3 to_scene(vec3 rgb) {
    return u_scene_gamma == 1.0 ? rgb : pow(max(rgb, vec3(0.0)), vec3(1.0 / u_scene_gamma));
}

void main() {
    vec4 albedo = texture(p3d_Texture0, v_uv) * v_color * p3d_ColorScale;
    float t = floor(osg_FrameTime * 20.0);
    float band = floor(v_world_pos.z * 18.0);
    float torn = step(1.0 - 0.5 * u_glitch, hash11(band * 3.1 + t));
    // Missing scanlines of a stalled stream.
    float line = step(0.5, fract(gl_FragCoord.y * 0.5));
    if (torn > 0.5 && line > 0.5 && hash11(band + t * 0.37) < u_glitch) discard;
    vec3 rgb = albedo.rgb;
    float split = u_glitch * torn;
    rgb = vec3(rgb.r * (1.0 + 1.5 * split), rgb.g * (1.0 - 0.6 * split), rgb.b * (1.0 + 1.2 * split));
    rgb += vec3(0.1, 0.9, 1.0) * split * 0.6 * hash11(band + t);
    o_color = vec4(to_scene(rgb * (1.0 + 0.5 * u_glitch)), albedo.a);
}
