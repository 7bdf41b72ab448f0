"""Expert reward for ManiSkill-PullCube: reach over the cube to its far side, pull it back.

Written from the task's physics. The target disc lies behind the cube (towards the robot),
so the gripper must press on the cube's far face -- the face opposite the goal -- and move
back. Going straight for that face would shove the cube away first, so until the tool
centre point is beyond the cube (past its far face along the pull direction) it is asked to
stay high enough (z >= 0.07 m) to pass over the 4 cm cube. The episode ends on success, so
the shaping terms are costs (<= 0) and success adds a one-off bonus.
  * ``approach``  -|tcp - p|, p the pulling point 3.5 cm beyond the cube centre on the line
                  goal -> cube, at z = 0.02 m;
  * ``clear``     -2 max(0, 0.07 - z_tcp) while the tool centre point is not yet beyond the
                  cube's far face (so it passes over, not through, the cube);
  * ``pull``      -3 |cube - goal| in x-y (the success test: < 0.1 m);
  * ``success``   +10 on the step the cube is on the disc.
"""


def pull_direction(state):
    d = state.goal_pos[:, :2] - state.obj_pos[:, :2]
    return d / np.maximum(np.sqrt(np.sum(d * d, axis=-1)), 1e-6)[:, None]


def compute_reward(state, action):
    d = pull_direction(state)
    xy = state.obj_pos[:, :2] - 0.035 * d
    p = np.concatenate([xy, state.obj_pos[:, 2:3] * 0.0 + 0.02], axis=-1)
    approach = -distance(state.tcp_pos, p)
    # signed distance of the tcp beyond the cube centre, against the pull direction
    beyond = -np.sum((state.tcp_pos[:, :2] - state.obj_pos[:, :2]) * d, axis=-1)
    clear = np.where(beyond < 0.03, -2.0 * np.maximum(0.07 - state.tcp_pos[:, 2], 0.0), 0.0)
    pull = -3.0 * distance(state.obj_pos[:, :2], state.goal_pos[:, :2])
    bonus = np.where(state.success, 10.0, 0.0)
    return approach + clear + pull + bonus, {"approach": approach, "clear": clear, "pull": pull,
                                             "success": bonus}


def compute_success(state):
    return distance(state.obj_pos[:, :2], state.goal_pos[:, :2]) < state.goal_radius
