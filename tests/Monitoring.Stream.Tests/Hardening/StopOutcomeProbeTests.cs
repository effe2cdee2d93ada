using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>
/// What <see cref="MetricsPipeline.StopAsync"/> reports to a caller after the stop was forced: the true cause (a signal
/// or the shutdown timeout), never a timeout that did not pass.
/// </summary>
public class StopOutcomeProbeTests
{
    [Fact]
    public async Task StopAsync_AfterAStopForcedBySignal_ReportsTheSignalNotATimeout()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(never.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(stuck)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 2);
        }

        await stuck.NextCallAsync().Within("the stuck sink's first write");
        using var signal = new CancellationTokenSource();
        Task forced = pipeline.StopAsync(signal.Token);
        await signal.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => forced.Within("the forced stop"));

        // The fake clock never moved: no shutdown timeout passed, so no caller may be told one did.
        Exception? later = await Record.ExceptionAsync(() => pipeline.StopAsync().Within("a later stop"));
        Assert.NotNull(later);
        Assert.IsType<OperationCanceledException>(later, exactMatch: false);
        Assert.Contains("second stop signal", later.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("within", later.Message, StringComparison.Ordinal);

        Exception? again = await Record.ExceptionAsync(() => pipeline.StopAsync().Within("a third stop"));
        Assert.IsType<OperationCanceledException>(again, exactMatch: false);
        Identities.AssertStopped(pipeline.GetMetrics());
    }

    [Fact]
    public async Task StopAsync_AfterAStopThatTimedOut_ReportsTheTimeoutToEveryLaterCaller()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(never.Task.WaitAsync(call.Token)));
        MetricsPipelineOptions options = Scenario.Options(time);
        options.ShutdownTimeout = TimeSpan.FromSeconds(30);
        await using var pipeline = new MetricsPipeline(options, [new SinkRegistration(stuck)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 2);
        }

        await stuck.NextCallAsync().Within("the stuck sink's first write");
        Task stop = pipeline.StopAsync();
        time.Advance(TimeSpan.FromSeconds(31));
        TimeoutException first = await Assert.ThrowsAsync<TimeoutException>(() => stop.Within("the stop past its timeout"));
        Assert.Contains("30 s", first.Message, StringComparison.Ordinal);

        // A later caller, with or without a token of its own, learns the same true cause.
        TimeoutException later = await Assert.ThrowsAsync<TimeoutException>(() => pipeline.StopAsync().Within("a later stop"));
        Assert.Contains("shutdown timeout", later.Message, StringComparison.Ordinal);
        using var signal = new CancellationTokenSource();
        await Assert.ThrowsAsync<TimeoutException>(() => pipeline.StopAsync(signal.Token).Within("a later stop with a live token"));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(100)]
    public void Validate_ShutdownTimeoutBeyondOneDay_RefusedNamingIt(int days)
    {
        // A timer cannot wait beyond about 49.7 days: such a value used to pass and throw from the stop itself.
        var options = new MetricsPipelineOptions { ShutdownTimeout = TimeSpan.FromDays(days) };
        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(MetricsPipelineOptions.ShutdownTimeout), e.ParamName);
        options.ShutdownTimeout = TimeSpan.FromDays(1);
        options.Validate();
        options.ShutdownTimeout = Timeout.InfiniteTimeSpan;
        options.Validate();
    }

    [Theory]
    [InlineData("AttemptTimeout")]
    [InlineData("MaxBackoff")]
    public void SinkOptionsValidate_TimeoutBeyondOneDay_RefusedNamingIt(string setting)
    {
        var options = new SinkOptions();
        if (setting == "AttemptTimeout")
        {
            options.AttemptTimeout = TimeSpan.FromDays(100);
        }
        else
        {
            options.MaxBackoff = TimeSpan.FromDays(100);
        }

        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => options.Validate());
        Assert.Equal(setting, e.ParamName);
    }
}
