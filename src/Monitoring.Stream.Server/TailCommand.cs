using System.CommandLine;
using System.Globalization;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.Aggregates;

namespace Monitoring.Stream.Server;

/// <summary>
/// <c>monitoring-stream tail</c>: prints window aggregates from the aggregate topic as they arrive, each
/// series and window merged over every partial aggregate seen so far (instances, re-emissions).
/// </summary>
internal static class TailCommand
{
    /// <summary>The <c>tail</c> command.</summary>
    public static Command Create()
    {
        var bootstrap = new Option<string>("--kafka-bootstrap") { Description = "Kafka bootstrap servers", Required = true };
        var topic = new Option<string>("--topic") { Description = "topic of window aggregates", DefaultValueFactory = _ => "metrics.aggregates" };
        var metric = new Option<string>("--metric") { Description = "print only this metric" };
        Option<long> limit = CliOptions.Number("--messages", "stop after this many messages (0: until Ctrl+C)", 0, 0, long.MaxValue);
        Option<long> idle = CliOptions.Number("--idle-seconds", "stop after this many seconds without a message (0: never)", 0, 0, 86_400);
        var command = new Command("tail", "print window aggregates from Kafka as they arrive, merged per series and window")
        {
            bootstrap, topic, metric, limit, idle,
        };
        command.SetAction((parse, ct) => Task.FromResult(Run(parse.GetValue(bootstrap)!, parse.GetValue(topic)!, parse.GetValue(metric), parse.GetValue(limit), parse.GetValue(idle), ct)));
        return command;
    }

    private static int Run(string bootstrap, string topic, string? metric, long limit, long idleSeconds, CancellationToken cancellationToken)
    {
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using CancellationTokenRegistration linked = cancellationToken.Register(stop.Cancel);
        using var reader = new KafkaAggregateReader(bootstrap, topic);
        var merger = new AggregateMerger();
        long messages = 0, rows = 0;
        bool waitingForTopic = false;
        DateTime lastMessage = DateTime.UtcNow;
        Console.WriteLine($"tail: '{topic}' at {bootstrap}{(metric is null ? string.Empty : ", metric " + metric)} (Ctrl+C to stop)");
        Console.WriteLine($"{"window end (UTC)",-20} {"series",-60} {"count",9} {"mean",11} {"min",11} {"max",11} {"p99",11} {"parts",5}");
        while (!stop.IsCancellationRequested && (limit == 0 || messages < limit))
        {
            AggregateMessage? read;
            try
            {
                read = reader.Read(TimeSpan.FromMilliseconds(500));
            }
            catch (ConsumeException e) when (e.Error.Code is ErrorCode.UnknownTopicOrPart or ErrorCode.Local_UnknownTopic or ErrorCode.Local_UnknownPartition)
            {
                if (!waitingForTopic)
                {
                    Console.WriteLine($"tail: topic '{topic}' does not exist yet; waiting for it");
                    waitingForTopic = true;
                }

                read = null;
            }
            catch (ConsumeException e)
            {
                Console.Error.WriteLine($"tail: {e.Error.Reason}");
                return 1;
            }

            using AggregateMessage? message = read;
            if (message is null)
            {
                if (idleSeconds > 0 && DateTime.UtcNow - lastMessage > TimeSpan.FromSeconds(idleSeconds))
                {
                    break;
                }

                continue;
            }

            lastMessage = DateTime.UtcNow;
            messages++;
            foreach (AggregateRow row in message.Rows)
            {
                if (metric is not null && row.Metric != metric)
                {
                    continue;
                }

                rows++;
                merger.Add(row);
                MergedAggregate merged = merger.Find(row.Metric, row.Labels, row.WindowStartUnixMs, row.WindowEndUnixMs)!;
                string series = row.Metric + "{" + string.Join(",", merged.Labels.Select(l => $"{l.Name}=\"{l.Value}\"")) + "}";
                double p99 = merged.Sketch?.GetQuantile(0.99) ?? double.NaN;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTimeOffset.FromUnixTimeMilliseconds(merged.WindowEndUnixMs):yyyy-MM-dd HH:mm:ss}  {series,-60} {merged.Moments.Count,9} {merged.Moments.Mean,11:G5} {merged.Moments.Min,11:G5} {merged.Moments.Max,11:G5} {p99,11:G5} {merged.Partials,5}"));
            }
        }

        Console.CancelKeyPress -= onCancel;
        Console.WriteLine($"tail: {messages:N0} messages, {rows:N0} aggregate rows, {merger.Results.Count:N0} series-windows");
        return 0;
    }
}
