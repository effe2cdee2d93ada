using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Running;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>Runs the hosting benchmarks; arguments go to <see cref="BenchmarkSwitcher"/> (e.g. --filter '*Query*'), <c>cpu</c> runs <see cref="CpuPerPoint"/>, <c>query-cpu</c> runs <see cref="QueryCpu"/>.</summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "cpu")
        {
            CpuPerPoint.Run(args[1..]);
            return;
        }

        if (args.Length > 0 && args[0] == "query-cpu")
        {
            QueryCpu.Run(args[1..]);
            return;
        }

        IConfig config = DefaultConfig.Instance
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median)
            .WithOption(ConfigOptions.JoinSummary, true);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }
}
