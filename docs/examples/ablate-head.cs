#!/usr/bin/env dotnet
#:project ../../MiniGpt/MiniGpt.csproj
#:property PublishAot=false
#:property Configuration=Release
#:include ExampleSupport.cs
// A forward hook that ablates one head (zeroes its z, so it writes nothing into the residual stream) and the loss change.
//   dotnet run docs/examples/ablate-head.cs [checkpoint] [layer] [head]
// Check: the hook gives the loss of the same model with that head's rows of W_O zeroed.
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Training;

string path = args.Length > 0 && args[0] != "" ? args[0] : Example.TinyCheckpoint();
int layer = Example.IntArg(args, 1, 1, "layer"), head = Example.IntArg(args, 2, 0, "head");
var model = Example.LoadModel(path);
var c = model.Config;
if (layer >= c.NLayers || head >= c.NHeads) { Console.Error.WriteLine($"error: L{layer}H{head} is not in a model of {c.NLayers} layers × {c.NHeads} heads"); return 2; }

// 8 sequences of 16 random tokens repeated once; predict each next token (T = 31 inputs, 31 targets)
int B = 8, half = 16, T = 2 * half - 1;
var seqs = HeadProbe.RepeatedRandomTokens(c.DVocab, B, half, seed: 5);
var x = new int[B * T]; var y = new int[B * T];
for (int b = 0; b < B; b++)
{
    seqs.AsSpan(b * 2 * half, T).CopyTo(x.AsSpan(b * T));
    seqs.AsSpan(b * 2 * half + 1, T).CopyTo(y.AsSpan(b * T));
}
// the repeated half: positions whose target is a token seen before (what an induction head predicts)
double RepeatedHalf()
{
    var losses = model.Losses; double s = 0; int n = 0;
    for (int b = 0; b < B; b++) for (int t = half - 1; t < T; t++) { s += losses[b * T + t]; n++; }
    return s / n;
}

float clean = model.Forward(x, y, B, T);
double cleanRep = RepeatedHalf();
float ablated; double ablatedRep;
// hook_z is [B, T, H, d_head]: head h's slice of every position is set to 0 before W_O reads it
using (model.Hooks.AddForward($"blocks.{layer}.attn.hook_z", (z, p) =>
{
    int H = c.NHeads, dh = c.DHead;
    for (int n = 0; n < p.Batch * p.SeqLen; n++) z.Span.Slice((n * H + head) * dh, dh).Clear();
}))
{
    ablated = model.Forward(x, y, B, T);
    ablatedRep = RepeatedHalf();
}
Console.WriteLine($"loss, all positions:      {clean:0.0000} → {ablated:0.0000} with L{layer}H{head} ablated ({ablated - clean:+0.0000;-0.0000} nats)");
Console.WriteLine($"loss, repeated half only: {cleanRep:0.0000} → {ablatedRep:0.0000} ({ablatedRep - cleanRep:+0.0000;-0.0000} nats)");

// the same ablation in the weights: W_O [H, d_head, d_model], head h's d_head rows zeroed (then restored)
var wO = model.Params[$"blocks.{layer}.attn.W_O"].Span.Slice(head * c.DHead * c.DModel, c.DHead * c.DModel);
var saved = wO.ToArray();
wO.Clear();
float byWeights = model.Forward(x, y, B, T);
saved.CopyTo(wO);
bool same = Math.Abs(byWeights - ablated) <= 1e-5f;
Console.WriteLine(same ? $"check: hook ablation = W_O ablation ({byWeights:0.0000}): ok" : $"check: hook {ablated} but W_O ablation {byWeights}: FAILED");
return same ? 0 : 1;
