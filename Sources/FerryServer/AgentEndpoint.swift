import FerryStore
import Foundation
import Hummingbird
import Logging
import NIOCore

/// `POST /agent/v1/OPERATION`: the agents' side of the HTTPS port. `activations` and
/// `claim` are called before the agent has a certificate; every other operation needs the
/// client certificate CreateAgent signed (a SigV4 signature, even the admin's, does not
/// stand in for it). Plain HTTP (the loopback two-command start) refuses agents.
struct AgentEndpoint: Sendable {
    let plane: ControlPlane
    let tls: Bool
    let logger: Logger

    func respond(_ incoming: Request, operation: String, context: FerryRequestContext) async -> Response {
        do {
            guard tls else {
                throw ServerError(type: "AccessDeniedException", status: 403,
                                  message: "agents connect over HTTPS only: start the control plane with `ferry server --tls`")
            }
            var request = incoming
            let body = try await request.collectBody(upTo: 256 << 20)
            let input = body.readableBytes == 0 ? [:] : try JSONValue.parse(Data(body.readableBytesView))
            let output: JSONValue
            switch operation {
            case "activations":
                output = try plane.requestActivation(input)
            case "claim":
                output = try await plane.claimActivation(input)
            default:
                guard let certificate = await context.peerCertificate() else {
                    throw ServerError(type: "AccessDeniedException", status: 403,
                                      message: "the agents' channel needs the agent's client certificate (mutual TLS); none was presented")
                }
                let identity = try AgentAuthority.identity(certificate)
                output = try await plane.agentCall(operation, agent: identity.agent, serial: identity.serial, input: input)
            }
            return APIHandler.json(.ok, output)
        } catch let e as ServerError {
            return APIHandler.error(e)
        } catch {
            logger.error("agent call failed", metadata: ["operation": "\(operation)", "error": "\(error)"])
            return APIHandler.error(.internalError("\(error)"))
        }
    }
}
