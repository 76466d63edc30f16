#version 330
// Neon tubes and sign lettering: emissive HDR colour with a white-hot core, mains buzz and the
// dropouts of a failing tube. Values well above 1 are what the post chain's bloom feeds on.

uniform vec3 u_color;        // linear RGB of the gas
uniform float u_intensity;   // HDR multiplier (3..8 reads as neon after tone mapping)
uniform float u_flicker;     // 0 steady .. 1 failing tube
uniform float u_buzz_hz;     // mains frequency the tube hums at
uniform float u_phase;       // per-sign offset so signs do not flicker in step
uniform float osg_FrameTime;
uniform sampler2D p3d_Texture0;  // glyph alpha for text; Panda binds white when untextured
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
    float alpha = texture(p3d_Texture0, v_uv).a * v_color.a * p3d_ColorScale.a;
    if (alpha < 0.02) discard;

    float t = osg_FrameTime + u_phase;
    // Buzz: a 50/60 Hz hum aliases against the frame rate into a fine shimmer.
    float buzz = 1.0 - 0.10 * u_flicker * (0.5 + 0.5 * sin(6.2831853 * u_buzz_hz * t));
    // Dropouts: the time is cut into 1/12 s slots; a failing tube loses some of them.
    float slot = floor(t * 12.0);
    float dark = step(1.0 - 0.3 * u_flicker, hash11(slot + u_phase * 31.0));
    float level = mix(1.0, 0.12 + 0.25 * hash11(slot * 1.37 + 5.0), dark);
    // Slow breathing of the gas, barely visible on a healthy tube.
    level *= 1.0 - 0.05 * u_flicker * sin(t * 1.7 + u_phase);

    // Face-on the tube is white-hot; at grazing angles only the gas colour is left.
    vec3 n = v_world_normal;
    float facing = 0.75;  // flat lettering has no normals: a warm core, not a white-out
    if (dot(n, n) > 1e-4) {
        facing = abs(dot(normalize(n), normalize(v_eye_pos - v_world_pos)));
    }
    float core = pow(facing, 4.0);
    vec3 gas = u_color * p3d_ColorScale.rgb;
    vec3 rgb = mix(gas, vec3(1.0) * max(max(gas.r, gas.g), gas.b), 0.45 * core);
    rgb *= u_intensity * buzz * level * (0.55 + 0.45 * facing);
    o_color = vec4(to_scene(rgb), alpha);
}
