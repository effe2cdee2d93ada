using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Prometheus.Tests.Support;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The text exposition of self-metrics, linted by Prometheus' own promtool and read back.</summary>
public sealed partial class PrometheusTextWriterTests
{
    [Fact]
    public async Task Write_MetricsOfARun_PassPromtoolAndReadBackEqual()
    {
        await using var stub = new RemoteWriteStub(r => r.Attempt == 1 ? new StubResponse(400) : StubResponse.NoContent);
        await using var remote = new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = stub.Endpoint, MaxConcurrentRequests = 1 });
        var collect = new RowCollectingSink();
        var options = new MetricsPipelineOptions { ShardCount = 2, AllowedLateness = TimeSpan.Zero, TimeProvider = new FakeTimeProvider(DateTimeOffset.UtcNow) };
        await using var pipeline = new MetricsPipeline(options, [collect, remote]);
        pipeline.Start();
        long start = PipelineDriver.WindowStartBeforeNow(10);
        const string source = "odd \"source\" \\ with\nnewline";
        using (PointWriter writer = pipeline.CreateWriter(source))
        {
            for (int w = 0; w < 3; w++)
            {
                for (int i = 0; i < 50; i++)
                {
                    writer.Write("req_seconds", [new("route", "/r" + i)], i, start + (w * 10_000) + i);
                }

                writer.Flush();
            }

            writer.Write("req_seconds", [new("route", "/r1")], double.NaN, start + 30_000);
            writer.Write("req_seconds", [new("route", "/r1")], 1, start);
        }

        await pipeline.StopAsync();
        PipelineMetrics metrics = pipeline.GetMetrics();

        var text = new StringWriter(CultureInfo.InvariantCulture);
        PrometheusTextWriter.Write(text, metrics);
        PrometheusTextWriter.Write(text, [remote]);
        string exposition = text.ToString();

        (int exit, string output) = await PromtoolCheckAsync(exposition);
        Assert.True(exit == 0, $"promtool check metrics exited {exit}: {output}\n{exposition}");

        Dictionary<string, double> samples = Parse(exposition);
        Assert.Equal(metrics.Offered, samples["monitoring_stream_points_offered_total"]);
        Assert.Equal(152, metrics.Offered);
        Assert.Equal(metrics.Accepted, samples["monitoring_stream_points_accepted_total"]);
        Assert.Equal(1, samples["monitoring_stream_points_rejected_total{reason=\"" + RejectReason.NotANumber.ToMetricLabel() + "\"}"]);
        Assert.Equal(1, samples["monitoring_stream_points_late_total{metric=\"req_seconds\"}"]);
        Assert.Equal(150, samples["monitoring_stream_points_emitted_total"]);
        Assert.Equal(metrics.WindowsEmitted, samples["monitoring_stream_windows_emitted_total"]);
        string escaped = "odd \\\"source\\\" \\\\ with\\nnewline";
        Assert.Equal(152, samples[$"monitoring_stream_source_points_offered_total{{source=\"{escaped}\"}}"]);
        Assert.Equal(150, samples["monitoring_stream_sink_points_written_total{sink=\"collect\"}"]);
        Assert.Equal(remote.SamplesSent, samples["monitoring_stream_remote_write_samples_sent_total{sink=\"remote-write\"}"]);
        Assert.Equal(remote.SamplesDroppedFor(RemoteWriteDropReason.Rejected), samples["monitoring_stream_remote_write_samples_dropped_total{sink=\"remote-write\",reason=\"rejected\"}"]);
        Assert.True(remote.SamplesDroppedFor(RemoteWriteDropReason.Rejected) > 0);
        Assert.Equal(150 / 50 * 50 * 11, remote.SamplesEncoded);
        Assert.Equal(1, samples["monitoring_stream_remote_write_state{sink=\"remote-write\",state=\"ok\"}"]);
        Assert.Equal(1, samples["monitoring_stream_state{state=\"stopped\"}"]);
        Assert.Equal(1, samples[$"monitoring_stream_source_points_late_total{{source=\"{escaped}\"}}"]);
        Assert.Equal(metrics.Watermarks[0] / 1000.0, samples["monitoring_stream_shard_watermark_seconds{shard=\"0\"}"]);
        Assert.Equal(1, samples["monitoring_stream_sink_state{sink=\"collect\",state=\"ok\"}"]);
    }

    [Theory]
    [InlineData(1.5, "1.5")]
    [InlineData(double.PositiveInfinity, "+Inf")]
    [InlineData(double.NegativeInfinity, "-Inf")]
    [InlineData(double.NaN, "NaN")]
    [InlineData(1e-300, "1E-300")]
    public void FormatValue_Any_IsWhatPrometheusParses(double value, string expected) =>
        Assert.Equal(expected, PrometheusTextWriter.FormatValue(value));

    private static Dictionary<string, double> Parse(string exposition)
    {
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (string line in exposition.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }

            Match m = SampleLine().Match(line);
            Assert.True(m.Success, "unparsable line: " + line);
            result[m.Groups[1].Value] = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }

        return result;
    }

    [GeneratedRegex("^(.*) (\\S+)$")]
    private static partial Regex SampleLine();

    private static async Task<(int Exit, string Output)> PromtoolCheckAsync(string exposition)
    {
        var info = new ProcessStartInfo("promtool", "check metrics")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using Process process = Process.Start(info)!;
        await process.StandardInput.WriteAsync(exposition);
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
