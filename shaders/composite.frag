#version 330
// The last pass: haze, bloom, tone mapping, grading, grain, vignette and glitch, in that order.
//   haze     orange dust between the camera and what it sees, denser with distance, lit by bloom
//   bloom    the blurred bright pass at up to three resolutions, added in HDR
//   tone map ACES filmic fit (Narkowicz), then sRGB encoding: the LUT grades display values,
//            exactly what `neonbar lut apply` does to a PNG
//   grade    3D LUT (sampler3D, trilinear), blended by u_lut_mix
//   film     grain and vignette after grading, as on a print
//   glitch   RGB split and scanline tear for a poor connection (screen-wide)

#ifndef BLOOM_LEVELS
#define BLOOM_LEVELS 3
#endif

uniform sampler2D u_scene;
uniform sampler2D u_depth;
uniform sampler2D u_bloom0;
uniform sampler2D u_bloom1;
uniform sampler2D u_bloom2;
uniform sampler3D u_lut;

uniform vec3 u_bloom_weights;  // per level; 0 for levels the quality preset does not build
uniform float u_bloom_strength;
uniform float u_exposure;
uniform float u_scene_gamma;   // 1 for linear HDR scenes, 2.2 to decode display-referred ones
uniform vec3 u_haze_color;     // linear HDR colour of the dust
uniform float u_haze_density;  // per metre
uniform float u_haze_start_m;  // clear air in front of the camera
uniform float u_haze_glow;     // how much the neon's bloom lights the dust
uniform vec2 u_near_far;       // camera lens near and far, metres
uniform float u_lut_size;
uniform float u_lut_mix;
uniform vec3 u_lut_domain_min;
uniform vec3 u_lut_domain_max;
uniform float u_grain;
uniform float u_vignette;
uniform float u_glitch;
uniform float u_time;

in vec2 v_uv;
out vec4 o_color;

float hash12(vec2 p) {
    vec3 p3 = fract(vec3(p.xyx) * 0.1031);
    p3 += dot(p3, p3.yzx + 33.33);
    return fract((p3.x + p3.y) * p3.z);
}

float linear_depth(float d) {
    // Standard OpenGL perspective depth (0..1) back to metres along the view axis.
    float n = u_near_far.x, f = u_near_far.y;
    return n * f / (f - d * (f - n));
}

vec3 aces(vec3 x) {
    return clamp((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0);
}

vec3 srgb_encode(vec3 c) {
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, c));
}

vec3 bloom_at(vec2 uv) {
    // Only the levels the quality preset built: every fetch counts on a CPU rasteriser.
    vec3 sum = u_bloom_weights.x * texture(u_bloom0, uv).rgb;
#if BLOOM_LEVELS > 1
    sum += u_bloom_weights.y * texture(u_bloom1, uv).rgb;
#endif
#if BLOOM_LEVELS > 2
    sum += u_bloom_weights.z * texture(u_bloom2, uv).rgb;
#endif
    return sum;
}

vec3 hdr_at(vec2 uv) {
    vec3 c = max(texture(u_scene, uv).rgb, vec3(0.0));
    if (u_scene_gamma != 1.0) c = pow(c, vec3(u_scene_gamma));
    vec3 bloom = bloom_at(uv);
    float dist = linear_depth(texture(u_depth, uv).r);
    float haze = 1.0 - exp(-u_haze_density * max(dist - u_haze_start_m, 0.0));
    // The dust is lit by what glows nearby: bloom tinted by the haze adds the shafts of light.
    vec3 dust = u_haze_color + u_haze_glow * bloom * (0.6 + 0.4 * u_haze_color / max(max(u_haze_color.r, u_haze_color.g), max(u_haze_color.b, 1e-4)));
    c = mix(c, dust, haze);
    return c + u_bloom_strength * bloom;
}

void main() {
    vec2 uv = v_uv;
    float frame = floor(u_time * 24.0);
    vec3 hdr;
    if (u_glitch > 0.001) {
        // Tear: a few horizontal bands slide sideways this frame.
        float band = floor(uv.y * 36.0);
        float torn = step(1.0 - 0.35 * u_glitch, hash12(vec2(band, frame)));
        uv.x += torn * (hash12(vec2(frame, band)) - 0.5) * 0.12 * u_glitch;
        vec2 split = vec2(0.006 * u_glitch * (1.0 + 2.0 * torn), 0.0);
        hdr = vec3(hdr_at(uv + split).r, hdr_at(uv).g, hdr_at(uv - split).b);
    } else {
        hdr = hdr_at(uv);
    }

    vec3 ldr = srgb_encode(aces(hdr * u_exposure));

    vec3 coord = clamp((ldr - u_lut_domain_min) / (u_lut_domain_max - u_lut_domain_min), 0.0, 1.0);
    // Texel centres: 0 and 1 must land on the first and last lattice points.
    vec3 tc = coord * ((u_lut_size - 1.0) / u_lut_size) + 0.5 / u_lut_size;
    vec3 graded = mix(ldr, texture(u_lut, tc).rgb, u_lut_mix);

    vec2 centred = (v_uv - 0.5) * vec2(1.0, 0.8);
    graded *= 1.0 - u_vignette * smoothstep(0.25, 0.75, length(centred) * 1.2);

    // Grain strongest in the mids, where film shows it.
    float luma = dot(graded, vec3(0.2126, 0.7152, 0.0722));
    float noise = hash12(gl_FragCoord.xy + fract(u_time * 7.13) * 1000.0) - 0.5;
    graded += u_grain * noise * (0.35 + luma * (1.0 - luma) * 2.6);

    if (u_glitch > 0.001) {
        float line = 0.5 + 0.5 * sin(gl_FragCoord.y * 3.14159);
        graded *= 1.0 - 0.25 * u_glitch * line;
    }
    o_color = vec4(clamp(graded, 0.0, 1.0), 1.0);
}
