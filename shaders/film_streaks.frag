#version 330
// Streak colour: linear HDR, added on top of the scene (the node blends additively).

uniform vec3 u_color;

in float v_alpha;
out vec4 o_color;

void main() {
    o_color = vec4(u_color * v_alpha, v_alpha);
}
