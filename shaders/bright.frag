#version 330
// Bloom's bright pass, written at half resolution: a 4-tap box (so thin tubes are not missed
// between half-resolution texels) then a soft-knee threshold on the brightest channel.

uniform sampler2D u_scene;
uniform float u_threshold;  // HDR level where bloom starts
uniform float u_knee;       // width of the soft transition

in vec2 v_uv;
out vec4 o_color;

void main() {
    vec2 texel = 1.0 / vec2(textureSize(u_scene, 0));
    vec3 c = 0.25 * (texture(u_scene, v_uv + texel * vec2(-0.5, -0.5)).rgb
                   + texture(u_scene, v_uv + texel * vec2(0.5, -0.5)).rgb
                   + texture(u_scene, v_uv + texel * vec2(-0.5, 0.5)).rgb
                   + texture(u_scene, v_uv + texel * vec2(0.5, 0.5)).rgb);
    c = max(c, vec3(0.0));
    float peak = max(max(c.r, c.g), c.b);
    float soft = clamp(peak - u_threshold + u_knee, 0.0, 2.0 * u_knee);
    soft = soft * soft / (4.0 * u_knee + 1e-4);
    float weight = max(soft, peak - u_threshold) / max(peak, 1e-4);
    o_color = vec4(c * weight, 1.0);
}
