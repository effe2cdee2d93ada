using Microsoft.Extensions.Hosting;
using Monitoring.Stream.Kafka.Source;

namespace Monitoring.Stream.Server.Service;

/// <summary>Runs the Kafka point source with the host; stopping it commits the offsets whose points every sink acknowledged.</summary>
internal sealed class KafkaSourceService(KafkaPointSource source) : IHostedService
{
    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        source.Start();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => source.StopAsync().WaitAsync(cancellationToken);
}
