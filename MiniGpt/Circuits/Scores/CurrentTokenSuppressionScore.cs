namespace MiniGpt.Circuits;

/// <summary>
/// current_token_suppression: the current-token score (A[i, i], <see cref="CurrentTokenScore"/>) of a head whose OV
/// eigenvalue score is ≤ −0.5 (<see cref="Suppression"/>), 0 for any other head. Gives the role current-token
/// suppression at ≥ 0.4: the head attends to the token at its own position and lowers that token's logit, which
/// pays wherever the current token rarely comes next (in the induction task, never). It refines current-token:
/// a head with both lists this one first. The trained default model's L0H0 and L0H1 have it.
/// </summary>
public sealed class CurrentTokenSuppressionScore() : HeadScore(Id, "cur-sup",
    "current-token score of a head whose OV eigenvalue score is ≤ −0.5 (it lowers the logit of the token it attends to), else 0",
    ["attn.hook_pattern"], new HeadRole(RoleName, 0.4, Refines: CurrentTokenScore.RoleName))
{
    public const string Id = "current_token_suppression";
    public const string RoleName = "current-token suppression";

    public override double[][] Compute(HeadProbe probe) => Suppression.Gate(probe, offset: 0);
}
