#!/usr/bin/env dotnet
#:project ../../MiniGpt/MiniGpt.csproj
#:property PublishAot=false
#:property Configuration=Release
// One training step by hand: forward, backward with a backward hook on the logits, gradient clipping, AdamW, forward again.
//   dotnet run docs/examples/train-step.cs
// Checks: the gradient the hook sees at the logits is (softmax(logits) − onehot(target)) / (B·T), and the step lowers the loss.
using MiniGpt.Circuits;
using MiniGpt.Model;
using MiniGpt.Training;

var cfg = new ModelConfig { NLayers = 2, DModel = 32, NHeads = 4, DHead = 8, NCtx = 16, DVocab = 20, AttnOnly = true };
var model = GptModel.Create(cfg, seed: 7);
var opt = new Optimizer(model, "adamw", beta1: 0.9f, beta2: 0.99f, eps: 1e-8f, weightDecay: 0.1f);
int B = 4, T = 15, V = cfg.DVocab;
var seqs = HeadProbe.RepeatedRandomTokens(V, B, 8, seed: 2); // [B, 16]: inputs are tokens 0..14, targets 1..15
var x = new int[B * T]; var y = new int[B * T];
for (int b = 0; b < B; b++) { seqs.AsSpan(b * 16, T).CopyTo(x.AsSpan(b * T)); seqs.AsSpan(b * 16 + 1, T).CopyTo(y.AsSpan(b * T)); }

float before = model.Forward(x, y, B, T);
var logits0 = model.Logits[..V].ToArray(); // position 0's logits, for the check below
float[]? seen = null;
model.ZeroGrad();
using (model.Hooks.AddBackward("logits", (g, p) =>
{
    Console.WriteLine($"backward hook at {p.Name}: {g.DebuggerText}");
    seen = g.Span[..V].ToArray();
}))
    model.Backward(1f / (B * T)); // the gradient of the mean loss
float norm = GradClip.ClipGlobalNorm(model.Grads.Buffer, maxNorm: 1f);
opt.Update(lr: 1e-2f);
float after = model.Forward(x, y, B, T);
Console.WriteLine($"loss {before:0.0000} → {after:0.0000} after one step (gradient norm {norm:0.000})");

// d mean loss / d logits[0] = (softmax(logits[0]) − onehot(y[0])) / (B·T), by hand
double max = logits0.Max(), z = logits0.Sum(v => Math.Exp(v - max)), worst = 0;
for (int v = 0; v < V; v++)
{
    double want = (Math.Exp(logits0[v] - max) / z - (v == y[0] ? 1 : 0)) / (B * T);
    worst = Math.Max(worst, Math.Abs(want - seen![v]));
}
bool ok = worst < 1e-6 && after < before;
Console.WriteLine(worst < 1e-6 ? $"check: the hooked gradient is (softmax − onehot)/(B·T) (max difference {worst:G2}): ok" : $"check: the hooked gradient is off by {worst:G3}: FAILED");
Console.WriteLine(after < before ? "check: the step lowered the loss: ok" : "check: the step did not lower the loss: FAILED");
return ok ? 0 : 1;
