using System.Globalization;
using System.Text.RegularExpressions;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Benchmarks.Load;

// `load --check`: each headline claim of docs/benchmarks.md beside today's measurement.
public static partial class LoadHarness
{
    /// <summary>
    /// Reads the "Headline claims" table of docs/benchmarks.md (rows <c>| `id` | claim | docs value | better |</c>),
    /// measures each claim it knows with a short run, and prints the docs' figure beside today's median and
    /// range, with whether the docs still hold (within 20 % in the claimed direction). Exit code 0 always:
    /// a shared machine's noise is information, not a build failure.
    /// </summary>
    /// <remarks>Usage: <c>load --check [--points N] [--rounds N] [--docs path]</c>; defaults 6,000,000 points (the headline runs' size: shorter runs measure the engine's start, its batch pool growing into fresh memory), 3 rounds, 10 timed window builds a round.</remarks>
    private static int Check(string[] args)
    {
        long points = 6_000_000;
        int rounds = 3;
        string? docs = null;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--points":
                    points = long.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--rounds":
                    rounds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--docs":
                    docs = args[i + 1];
                    break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }

        docs ??= FindDocs();
        if (docs is null || !File.Exists(docs))
        {
            Console.Error.WriteLine("docs/benchmarks.md not found: run from the repository or pass --docs");
            return 2;
        }

        List<Claim> claims = ReadClaims(File.ReadAllLines(docs));
        if (claims.Count == 0)
        {
            Console.Error.WriteLine($"no rows in the 'Headline claims' table of {docs}");
            return 2;
        }

        string loadBefore = LoadAverage();
        var today = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (int series in (int[])[1_000, 100_000])
        {
            string suffix = series == 1_000 ? "1k" : "100k";
            if (!claims.Any(c => c.Id.EndsWith("-" + suffix, StringComparison.Ordinal) && !c.Id.StartsWith("arrow", StringComparison.Ordinal)))
            {
                continue;
            }

            Label[][] labels = BuildLabels(series);
            Workload work = Workload.Create(labels.Length, points / s_producers);
            _ = RunOpenTelemetry(labels, work);
            _ = RunPipeline(labels, work, boundHandles: false);
            _ = RunPipeline(labels, work, boundHandles: true);
            var otel = new List<Result>();
            var resolved = new List<Result>();
            var bound = new List<Result>();
            for (int r = 0; r < rounds; r++)
            {
                otel.Add(RunOpenTelemetry(labels, work));
                resolved.Add(RunPipeline(labels, work, boundHandles: false));
                bound.Add(RunPipeline(labels, work, boundHandles: true));
                Console.Error.WriteLine($"  check: round {r + 1}/{rounds} at {series:N0} series");
            }

            // Rounds are interleaved, so each round's ratio compares engines under the same load.
            today["resolved-vs-otel-" + suffix] = [.. resolved.Select((x, r) => x.PointsPerSecond / otel[r].PointsPerSecond)];
            today["bound-vs-otel-" + suffix] = [.. bound.Select((x, r) => x.PointsPerSecond / otel[r].PointsPerSecond)];
            today["otel-cpu-ns-" + suffix] = [.. otel.Select(x => x.CpuNsPerPoint)];
            today["resolved-cpu-ns-" + suffix] = [.. resolved.Select(x => x.CpuNsPerPoint)];
            today["bound-cpu-ns-" + suffix] = [.. bound.Select(x => x.CpuNsPerPoint)];
            today["resolved-cpu-vs-otel-" + suffix] = [.. resolved.Select((x, r) => x.CpuNsPerPoint / otel[r].CpuNsPerPoint)];
        }

        if (claims.Any(c => c.Id.StartsWith("arrow", StringComparison.Ordinal)))
        {
            var one = new List<double>();
            var oneCpu = new List<double>();
            var oneFastestCpu = new List<double>();
            var two = new List<double>();
            int runs = s_arrowRuns;
            s_arrowRuns = 10;
            for (int r = 0; r < rounds; r++)
            {
                (_, double total, double cpu, double fastestCpu) = TimeWindowToArrow(100_000, shards: 1);
                one.Add(total);
                oneCpu.Add(cpu);
                oneFastestCpu.Add(fastestCpu);
                two.Add(TimeWindowToArrow(100_000, shards: 2).Total);
            }

            s_arrowRuns = runs;
            today["arrow-1-shard-ms"] = [.. one];
            today["arrow-1-shard-cpu-ms"] = [.. oneCpu];
            today["arrow-1-shard-fastest-cpu-ms"] = [.. oneFastestCpu];
            today["arrow-2-shards-ms"] = [.. two];
        }

        if (claims.Any(c => c.Id == "memory-bytes-per-series"))
        {
            today["memory-bytes-per-series"] = [.. Enumerable.Range(0, rounds).Select(_ => MeasureMemoryPerSeries(100_000, pointsPerSeries: 200))];
        }

        Console.WriteLine();
        Console.WriteLine($"# docs/benchmarks.md headline claims beside today's measurement ({rounds} rounds, {points:N0} points a throughput run; load average before: {loadBefore}, after: {LoadAverage()})");
        Console.WriteLine("| claim | docs | today: median (range) | holds? |");
        Console.WriteLine("|---|---:|---:|---|");
        foreach (Claim claim in claims)
        {
            if (!today.TryGetValue(claim.Id, out double[]? values) || values.Length == 0)
            {
                Console.WriteLine($"| {claim.Text} | {claim.DocsText} | not measured by --check | ? |");
                continue;
            }

            double median = Median(values);
            bool holds = claim.HigherIsBetter ? median >= claim.Docs * 0.8 : median <= claim.Docs * 1.2;
            Console.WriteLine($"| {claim.Text} | {claim.DocsText} | {Format(median)} ({Format(values.Min())}–{Format(values.Max())}) | " +
                $"{(holds ? "yes" : "NO")} ({(claim.HigherIsBetter ? "higher" : "lower")} is better, 20 % tolerance) |");
        }

        return 0;
    }

    private static string Format(double value) => value >= 100 ? value.ToString("N0", CultureInfo.InvariantCulture) : value.ToString("0.00", CultureInfo.InvariantCulture);

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string? FindDocs()
    {
        for (string? dir = Directory.GetCurrentDirectory(); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            string candidate = Path.Combine(dir, "docs", "benchmarks.md");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>The rows of the table under the "Headline claims" heading: id in backticks, claim, docs value (its first number), "higher" or "lower".</summary>
    private static List<Claim> ReadClaims(string[] lines)
    {
        var claims = new List<Claim>();
        int start = Array.FindIndex(lines, l => l.StartsWith("## Headline claims", StringComparison.Ordinal));
        if (start < 0)
        {
            return claims;
        }

        for (int i = start + 1; i < lines.Length && !lines[i].StartsWith("## ", StringComparison.Ordinal); i++)
        {
            string[] cells = lines[i].Split('|', StringSplitOptions.TrimEntries);
            if (cells.Length < 6 || !cells[1].StartsWith('`'))
            {
                continue;
            }

            Match number = FirstNumber().Match(cells[3]);
            if (!number.Success)
            {
                continue;
            }

            claims.Add(new Claim(cells[1].Trim('`'), cells[2], cells[3], double.Parse(number.Value.Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture),
                cells[4].StartsWith("higher", StringComparison.OrdinalIgnoreCase)));
        }

        return claims;
    }

    [GeneratedRegex(@"[0-9][0-9,]*(\.[0-9]+)?")]
    private static partial Regex FirstNumber();

    private sealed record Claim(string Id, string Text, string DocsText, double Docs, bool HigherIsBetter);
}
