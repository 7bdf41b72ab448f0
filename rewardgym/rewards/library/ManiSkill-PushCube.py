"""Expert reward for ManiSkill-PushCube: get behind the cube, push it onto the target disc.

Written from the task's physics. The fingers cannot hold the cube while pushing, so the cube
moves only where the gripper presses on it: to move it towards the goal the tool centre point
must touch the cube's face *opposite* the goal, at the cube's height (z ~ 0.02 m), and then
travel towards the goal. The episode ends on success, so every shaping term is a cost (<= 0):
a policy that dawdles near the goal pays for every step, and success adds a one-off bonus.
  * ``approach``  -|tcp - p|, p the pushing point 3.5 cm behind the cube centre on the line
                  goal -> cube (2 cm half-size + 1.5 cm for the finger pad), at z = 0.02 m;
  * ``push``      -3 |cube - goal| in x-y (the success test measures x-y only);
  * ``flat``      -5 max(0, z_cube - 0.02): lifting or tipping the cube fails the test
                  (z < 0.025 m);
  * ``success``   +10 on the step the cube is on the disc (the episode ends there).
"""


def pushing_point(state):
    """(B, 3) where the tool centre point must be to push the cube towards the goal."""
    d = state.goal_pos[:, :2] - state.obj_pos[:, :2]
    d = d / np.maximum(np.sqrt(np.sum(d * d, axis=-1)), 1e-6)[:, None]
    xy = state.obj_pos[:, :2] - 0.035 * d
    return np.concatenate([xy, state.obj_pos[:, 2:3] * 0.0 + 0.02], axis=-1)


def compute_reward(state, action):
    approach = -distance(state.tcp_pos, pushing_point(state))
    push = -3.0 * distance(state.obj_pos[:, :2], state.goal_pos[:, :2])
    flat = -5.0 * np.maximum(state.obj_pos[:, 2] - 0.02, 0.0)
    bonus = np.where(state.success, 10.0, 0.0)
    return approach + push + flat + bonus, {"approach": approach, "push": push, "flat": flat,
                                            "success": bonus}


def compute_potential(state):
    """Φ(s) <= 0: the gripper at the pushing point and the cube on the goal."""
    return -distance(state.tcp_pos, pushing_point(state)) - 3.0 * distance(state.obj_pos[:, :2],
                                                                            state.goal_pos[:, :2])


def compute_success(state):
    return (distance(state.obj_pos[:, :2], state.goal_pos[:, :2]) < state.goal_radius) & \
        (state.obj_pos[:, 2] < 0.025)
