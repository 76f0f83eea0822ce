namespace MiniGpt.Circuits;

/// <summary>
/// previous_token_suppression: the previous-token score (A[i, i−1], <see cref="PreviousTokenScore"/>) of a head whose
/// OV eigenvalue score is ≤ −0.5 (<see cref="Suppression"/>), 0 for any other head. Gives the role previous-token
/// suppression at ≥ 0.4: the head attends one back and lowers the logit of that token. It refines previous-token:
/// a head with both lists this one first. (The OV circuit is read straight to the unembedding; a previous-token head
/// of an induction circuit is read mostly by the next layer's keys, which this does not measure.)
/// </summary>
public sealed class PreviousTokenSuppressionScore() : HeadScore(Id, "prev-sup",
    "previous-token score of a head whose OV eigenvalue score is ≤ −0.5 (it lowers the logit of the token it attends to), else 0",
    ["attn.hook_pattern"], new HeadRole(RoleName, 0.4, Refines: PreviousTokenScore.RoleName))
{
    public const string Id = "previous_token_suppression";
    public const string RoleName = "previous-token suppression";

    public override double[][] Compute(HeadProbe probe) => Suppression.Gate(probe, offset: 1);
}
