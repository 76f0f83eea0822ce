using System.Diagnostics;
using MiniGpt.Data;
using MiniGpt.Train.Progress;

namespace MiniGpt.Train;

public static class PrepareVerb
{
    private static readonly Option<string> Data = Option.Required("data", "the UTF-8 text corpus (read in chunks: it may be larger than memory)", "TEXT");
    private static readonly Option<string> Tokenizer = SharedOptions.Tokenizer.WithHelpLine(
        $"char, bpe:N (learned from the first {Preparer.LearnChars >> 20} Mi characters), cl100k_base, o200k_base or gpt2 (all 50,257 ids)");
    private static readonly Option<string> Out = Option.Required("out", "output folder", "FOLDER");
    private static readonly Option<bool> Overwrite = Option.Flag("overwrite", "replace token files already in --out");

    internal static Options Declare() =>
        new Options("prepare", "prepare: tokenizes a UTF-8 text corpus once into OUT/train.bin and OUT/val.bin (headerless little-endian\n" +
                               "uint16, or uint32 for vocabularies over 65,536, as nanoGPT's) with OUT/meta.json naming the tokenizer;\n" +
                               "'train --data OUT' then streams them through a memory map.",
            Data, Tokenizer, Out, Overwrite);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        string data = o.Get(Data);
        string outDir = o.Get(Out);
        string name = o.Get(Tokenizer);
        Tokenizers.CheckName(name);
        if (File.Exists(outDir)) throw new UsageError($"--out '{outDir}' is a file: give a folder");
        if (File.Exists(Path.Combine(outDir, "train.bin")) && !o.Get(Overwrite))
            throw new UsageError($"'{outDir}' already holds prepared tokens: pass --overwrite to replace them, or another --out");

        var clock = Stopwatch.StartNew();
        var r = ProgressView.Run(stdout, "prepare", sink =>
        {
            // each phase is a log line as it starts, so the first shows at once; a pass over the text adds a line
            // every 10 %, and in a terminal the bar's status (phase, MB, elapsed) is redrawn while a phase runs,
            // even one that reports nothing until it ends (learning BPE merges)
            string phase = "starting";
            long read = 0, total = 1;
            double lastShown = -1, phaseStart = 0;
            var gate = new object();
            string Status() => read > 0 ? $"{phase}: {read / 1e6:F1} of {total / 1e6:F1} MB, {Duration.Short(clock.Elapsed)}" : $"{phase}, {Duration.Short(clock.Elapsed)}";
            using var tick = new Timer(_ => { lock (gate) if (sink.WantsStatus) sink.Report(read, total, Status()); }, null, 0, 100);
            return Preparer.Run(data, name, outDir,
                (bytes, all) =>
                {
                    lock (gate)
                    {
                        if (bytes == read && read > 0) return; // the reader's last chunks can end at the same file position
                        (read, total) = (bytes, all);
                        double f = (double)bytes / all, secs = clock.Elapsed.TotalSeconds;
                        if (sink.WantsStatus) sink.Report(bytes, all, Status());
                        if (f - lastShown < 0.1 && bytes < all) return;
                        lastShown = f;
                        // MB/s of this pass over the text
                        sink.Line($"prepare: {Math.Floor(100 * f),3:0} % ({bytes / 1e6:F1} of {all / 1e6:F1} MB, {bytes / 1e6 / Math.Max(secs - phaseStart, 1e-9):F1} MB/s, {Duration.Short(clock.Elapsed)})");
                    }
                },
                phase: p =>
                {
                    lock (gate)
                    {
                        (phase, read, lastShown, phaseStart) = (p, 0, -1, clock.Elapsed.TotalSeconds);
                        sink.Line($"prepare: {p} ({Duration.Short(clock.Elapsed)})");
                        sink.Report(0, total, Status());
                    }
                });
        });
        var m = r.Meta;
        stdout.WriteLine($"done: {m.TrainTokens:N0} train + {m.ValTokens:N0} val tokens ({m.TokenizerName}, vocabulary {m.VocabSize:N0}, {m.Dtype}) in {outDir} ({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }
}
