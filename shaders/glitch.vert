#version 330
// The glitch's geometry half: whole horizontal slices of the avatar jump sideways for a frame.

uniform mat4 p3d_ModelViewProjectionMatrix;
uniform mat4 p3d_ModelMatrix;
uniform mat4 p3d_ViewMatrixInverse;
uniform float u_glitch;
uniform float osg_FrameTime;

in vec4 p3d_Vertex;
in vec3 p3d_Normal;
in vec4 p3d_Color;
in vec2 p3d_MultiTexCoord0;

out vec3 v_world_pos;
out vec3 v_world_normal;
out vec3 v_eye_pos;
out vec4 v_color;
out vec2 v_uv;

float hash11(float n) { return fract(sin(n * 12.9898 + 78.233) * 43758.5453); }

void main() {
    vec4 world = p3d_ModelMatrix * p3d_Vertex;
    float t = floor(osg_FrameTime * 20.0);
    float band = floor(world.z * 18.0);
    float torn = step(1.0 - 0.5 * u_glitch, hash11(band * 3.1 + t));
    vec4 local = p3d_Vertex;
    local.x += torn * u_glitch * (hash11(band + t * 1.3) - 0.5) * 0.6;
    v_world_pos = (p3d_ModelMatrix * local).xyz;
    v_world_normal = mat3(p3d_ModelMatrix) * p3d_Normal;
    v_eye_pos = p3d_ViewMatrixInverse[3].xyz;
    v_color = p3d_Color;
    v_uv = p3d_MultiTexCoord0;
    gl_Position = p3d_ModelViewProjectionMatrix * local;
}
