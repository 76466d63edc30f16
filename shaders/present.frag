#version 330
// Puts the composite on the window when the chain runs below window resolution (quality
// presets with a render scale under 1): a bilinear upscale and nothing else.

uniform sampler2D u_src;

in vec2 v_uv;
out vec4 o_color;

void main() {
    o_color = vec4(texture(u_src, v_uv).rgb, 1.0);
}
