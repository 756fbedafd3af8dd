//! `GET /v1/models` and `GET /v1/models/{id}`: the local models, then each remote
//! provider's.

use axum::extract::{Path, State};
use axum::Json;

use crate::error::ApiError;
use crate::openai::{model_object, remote_model_object, ModelObject};
use crate::wire::List;
use crate::AppState;

/// Every model served: the local ones, then each remote provider's (`PROVIDER/MODEL`, with
/// `provider` set) that its provider listed.
async fn served_models(state: &AppState) -> Vec<ModelObject> {
    let mut models: Vec<ModelObject> = state
        .models
        .list()
        .iter()
        .map(|model| model_object(&model.id, model.created))
        .collect();
    if let Some(providers) = state.models.providers() {
        models.extend(
            providers
                .remote_models()
                .await
                .into_iter()
                .map(|model| remote_model_object(&model.id, model.created, &model.provider)),
        );
    }
    models
}

pub async fn list_models(State(state): State<AppState>) -> Json<List<ModelObject>> {
    Json(List::new(served_models(&state).await))
}

pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    served_models(&state)
        .await
        .into_iter()
        .find(|model| model.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::model_not_found(&id))
}
