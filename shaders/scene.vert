#version 330
// Shared vertex stage for the scene shaders (neon, lit, wet_floor, glitch).
// Lighting happens in world space (metres), where the layout's lights are given.

uniform mat4 p3d_ModelViewProjectionMatrix;
uniform mat4 p3d_ModelMatrix;
uniform mat4 p3d_ViewMatrixInverse;

in vec4 p3d_Vertex;
in vec3 p3d_Normal;
in vec4 p3d_Color;
in vec2 p3d_MultiTexCoord0;

out vec3 v_world_pos;
out vec3 v_world_normal;
out vec3 v_eye_pos;
out vec4 v_color;
out vec2 v_uv;

void main() {
    vec4 world = p3d_ModelMatrix * p3d_Vertex;
    v_world_pos = world.xyz;
    // No inverse-transpose: the bar only uses rotations and uniform (or mirroring) scales.
    v_world_normal = mat3(p3d_ModelMatrix) * p3d_Normal;
    v_eye_pos = p3d_ViewMatrixInverse[3].xyz;
    v_color = p3d_Color;
    v_uv = p3d_MultiTexCoord0;
    gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
}
